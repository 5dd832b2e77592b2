//! The process-wide decoding budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_image::{default_decode_budget, DecodeBudget, ImageError};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn more_than_the_whole_budget_is_refused_at_once() {
    let budget = DecodeBudget::new(100 * MIB);
    let start = Instant::now();
    let r = budget.reserve(100 * MIB + 1, Duration::from_secs(30)).await;
    assert!(start.elapsed() < Duration::from_millis(100));
    assert!(
        matches!(r, Err(ImageError::OverBudget { needed, budget }) if needed == 100 * MIB + 1 && budget == 100 * MIB),
        "{r:?}"
    );
    // Exactly the whole budget is fine.
    let p = budget.reserve(100 * MIB, Duration::ZERO).await.unwrap();
    assert_eq!(p.bytes(), 100 * MIB);
    assert_eq!(budget.in_use(), 100 * MIB);
    drop(p);
    assert_eq!(budget.in_use(), 0);
    // Far beyond u32 KiB: still a clean refusal.
    let r = budget.reserve(u64::MAX, Duration::ZERO).await;
    assert!(matches!(r, Err(ImageError::OverBudget { .. })), "{r:?}");
}

#[tokio::test]
async fn a_reservation_that_does_not_fit_waits_then_is_busy() {
    let budget = DecodeBudget::new(100 * MIB);
    let first = budget.reserve(60 * MIB, Duration::ZERO).await.unwrap();
    assert_eq!(budget.in_use(), 60 * MIB);

    let start = Instant::now();
    let r = budget.reserve(50 * MIB, Duration::from_millis(150)).await;
    let waited = start.elapsed();
    assert!(
        matches!(r, Err(ImageError::Busy { needed, budget }) if needed == 50 * MIB && budget == 100 * MIB),
        "{r:?}"
    );
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    // Zero wait: refused without waiting.
    let r = budget.reserve(50 * MIB, Duration::ZERO).await;
    assert!(matches!(r, Err(ImageError::Busy { .. })), "{r:?}");
    // What fits still goes through.
    let small = budget.reserve(40 * MIB, Duration::ZERO).await.unwrap();
    assert_eq!(budget.in_use(), 100 * MIB);
    drop((first, small));
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn a_waiting_reservation_succeeds_once_the_first_permit_drops() {
    let budget = DecodeBudget::new(100 * MIB);
    let first = budget.reserve(60 * MIB, Duration::ZERO).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
    });
    let start = Instant::now();
    let second = budget
        .reserve(50 * MIB, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(budget.in_use(), 50 * MIB);
    release.await.unwrap();
    drop(second);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn waiters_are_served_in_order() {
    // A large reservation at the head of the queue is not overtaken by
    // smaller ones that would fit in what is free now.
    let budget = DecodeBudget::new(100 * MIB);
    let first = budget.reserve(60 * MIB, Duration::ZERO).await.unwrap();
    let b = budget.clone();
    let large = tokio::spawn(async move { b.reserve(50 * MIB, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = budget.reserve(30 * MIB, Duration::from_millis(20)).await;
    assert!(matches!(r, Err(ImageError::Busy { .. })), "{r:?}");
    drop(first);
    let large = large.await.unwrap().unwrap();
    assert_eq!(large.bytes(), 50 * MIB);
    let small = budget.reserve(30 * MIB, Duration::ZERO).await.unwrap();
    assert_eq!(budget.in_use(), 80 * MIB);
    drop((large, small));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_exceed_the_total() {
    let budget = DecodeBudget::new(10 * MIB);
    let held = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..40u64)
        .map(|i| {
            let (budget, held, peak) = (budget.clone(), held.clone(), peak.clone());
            tokio::spawn(async move {
                let bytes = (1 + i % 4) * 2 * MIB + 123;
                let permit = budget
                    .reserve(bytes, Duration::from_secs(30))
                    .await
                    .unwrap();
                let now = held.fetch_add(permit.bytes(), Ordering::SeqCst) + permit.bytes();
                peak.fetch_max(now, Ordering::SeqCst);
                assert!(now <= budget.total(), "{now}");
                tokio::time::sleep(Duration::from_millis(2)).await;
                held.fetch_sub(permit.bytes(), Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 10 * MIB);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn default_budget_is_sane() {
    let b = default_decode_budget();
    assert!((256 * MIB..=4096 * MIB).contains(&b), "{b}");
    let budget = DecodeBudget::from_available_memory();
    assert_eq!(budget.total(), b);
    assert_eq!(budget.in_use(), 0);
}
