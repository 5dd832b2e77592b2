//! Search and registration benchmark for the per-group index.
//!
//! ```text
//! cargo run --release -p facegate-store --example search_bench -- \
//!     [--sizes 10000,100000,1000000] [--queries 200]
//! ```
//!
//! Synthetic clustered unit vectors (128-d, fixed seed, cosines mostly
//! 0.8-0.92 like face embeddings). Per size: build time, a naive f32 scan
//! with a full sort (the baseline) and the index, p50/p99 over the same
//! queries, resident memory per face, and registration throughput. The
//! index's results at limits 10 and 4096 are checked against the naive
//! scan's, bit for bit. The load average is printed before and after: on
//! a shared 2-core machine, other work shows up in the timings.

use std::time::{Duration, Instant};

// The index is crate-private; it is compiled into this example from its
// source, with these shims standing in for the crate modules it imports.
#[allow(dead_code)]
mod error {
    pub use facegate_store::{Result, StoreError};
}
#[allow(dead_code)]
mod store {
    pub use facegate_store::{FaceBox, FaceRecord};
}
#[allow(dead_code)]
mod time {
    pub use facegate_store::UtcMillis;
}
#[allow(dead_code)]
#[path = "../src/index.rs"]
mod index;
/// The crate's own UUID helpers, so hit records cost what they cost there.
#[allow(dead_code)]
#[path = "../src/validate.rs"]
mod validate;

use facegate_store::{FaceBox, FaceRecord, UtcMillis};
use index::{dot, GroupIndex};

const DIM: usize = 128;
const THRESHOLD: f32 = 0.85;

use facegate_test_support::rng::SplitMix64 as Rng;

/// Face-like data: shared mean + per-person offset + per-photo noise.
struct Faces {
    rng: Rng,
    centres: Vec<Vec<f32>>,
}

impl Faces {
    fn new(seed: u64, people: usize) -> Self {
        let mut rng = Rng(seed);
        let s = 1.0 / (DIM as f32).sqrt();
        let mean: Vec<f32> = (0..DIM).map(|_| rng.normal() * s).collect();
        let centres = (0..people)
            .map(|_| mean.iter().map(|m| m + rng.normal() * s * 0.387).collect())
            .collect();
        Faces { rng, centres }
    }
    fn next(&mut self) -> Vec<f32> {
        let s = 1.0 / (DIM as f32).sqrt();
        let c = (self.rng.next_u64() % self.centres.len() as u64) as usize;
        let v: Vec<f32> = self.centres[c]
            .iter()
            .map(|x| x + self.rng.normal() * s * 0.316)
            .collect();
        index::normalize(&v).unwrap_or(v)
    }
}

fn record(id: u128) -> FaceRecord {
    FaceRecord {
        face_id: validate::format_uuid(id),
        image_id: validate::format_uuid(id ^ 1),
        external_image_id: None,
        bbox: FaceBox {
            x0: 0.1,
            y0: 0.1,
            x1: 0.5,
            y1: 0.5,
        },
        confidence: 0.99,
        created_at: UtcMillis(1_700_000_000_000),
        model_version: "dlib-128".into(),
    }
}

/// Resident set size in bytes, from /proc/self/statm (0 where absent).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn timed(mut f: impl FnMut(usize), n: usize) -> (f64, f64) {
    let mut t: Vec<Duration> = (0..n)
        .map(|i| {
            let s = Instant::now();
            f(i);
            s.elapsed()
        })
        .collect();
    t.sort();
    (pct(&t, 0.5), pct(&t, 0.99))
}

/// Baseline: score every row with the same `dot`, keep those over the
/// threshold, full sort, truncate.
fn naive(rows: &[f32], q: &[f32], limit: usize, min: f32) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = rows
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, v)| (i, dot(q, v)))
        .filter(|(_, s)| *s >= min)
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

/// The 1-minute load average (empty where /proc is absent).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let queries: usize = arg("--queries").and_then(|s| s.parse().ok()).unwrap_or(200);
    println!(
        "dim {DIM}, {queries} queries per size, threshold {THRESHOLD}, load average {}",
        load_average()
    );
    println!();
    println!("| faces | build s | naive p50/p99 ms | idx k=10 p50/p99 ms | idx k=4096 p50/p99 ms | idx k=4096 ids only p50/p99 ms | idx k=10 t={THRESHOLD} p50/p99 ms | naive/idx (k=10 p50) | RSS B/face |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let mut faces = Faces::new(7, (n / 10).max(1));
        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut ix = GroupIndex::default();
        ix.reserve(n, DIM);
        for i in 0..n {
            let v = faces.next();
            if let Err(e) = ix.push(record(i as u128 + 1), &v) {
                eprintln!("push failed: {e}");
                return;
            }
        }
        let build = t.elapsed().as_secs_f64();
        let per_face = rss_bytes().saturating_sub(rss0) as f64 / n as f64;
        // The naive baseline needs the raw rows; rebuilt from the same seed
        // after the RSS reading so they are not counted.
        let mut again = Faces::new(7, (n / 10).max(1));
        let rows: Vec<f32> = (0..n).flat_map(|_| again.next()).collect();
        let qs: Vec<Vec<f32>> = (0..queries).map(|_| faces.next()).collect();
        // Naive runs fewer queries at 1M to keep the whole run short.
        let nq = if n >= 500_000 {
            queries.min(30)
        } else {
            queries
        };
        // The naive scan sorts every row whatever the limit; it keeps 4096
        // so both limits can be checked against it.
        let mut want = Vec::with_capacity(nq);
        let (naive_p50, naive_p99) = timed(|i| want.push(naive(&rows, &qs[i], 4096, -1.0)), nq);
        // Exactness check, untimed: ids and score bits must be identical.
        let mismatches = [10, 4096].map(|limit| {
            want.iter()
                .zip(&qs)
                .filter(|(w, q)| {
                    let w = &w[..limit.min(w.len())];
                    let got = ix.search_ids(q, limit, -1.0, None);
                    w.len() != got.len()
                        || w.iter()
                            .zip(&got)
                            .any(|(a, b)| a.0 as u128 + 1 != b.0 || a.1.to_bits() != b.1.to_bits())
                })
                .count()
        });
        let (k10a, k10b) = timed(|i| drop(ix.search(&qs[i], 10, -1.0, None)), queries);
        let (k4a, k4b) = timed(|i| drop(ix.search(&qs[i], 4096, -1.0, None)), queries);
        // The same without building the 4096 FaceRecords.
        let (k4ia, k4ib) = timed(|i| drop(ix.search_ids(&qs[i], 4096, -1.0, None)), queries);
        let (tha, thb) = timed(|i| drop(ix.search(&qs[i], 10, THRESHOLD, None)), queries);
        println!(
            "| {n} | {build:.2} | {naive_p50:.2} / {naive_p99:.2} | {k10a:.2} / {k10b:.2} | {k4a:.2} / {k4b:.2} | {k4ia:.2} / {k4ib:.2} | {tha:.2} / {thb:.2} | {:.1}x | {per_face:.0} |",
            naive_p50 / k10a
        );
        for (limit, bad) in [10, 4096].into_iter().zip(mismatches) {
            if bad > 0 {
                println!(
                    "MISMATCH: {bad} of {nq} queries at limit {limit} differ from the naive scan"
                );
            }
        }
    }

    // Registration throughput into a 100k group, in-memory index only.
    let mut faces = Faces::new(9, 10_000);
    let mut ix = GroupIndex::default();
    for i in 0..100_000u128 {
        let _ = ix.push(record(i + 1), &faces.next());
    }
    let batch: Vec<(FaceRecord, Vec<f32>)> = (0..20_000u128)
        .map(|i| (record(1_000_000 + i), faces.next()))
        .collect();
    let t = Instant::now();
    for (r, v) in batch {
        let _ = ix.push(r, &v);
    }
    let s = t.elapsed().as_secs_f64();
    println!();
    println!(
        "registration into a 100k group (index only): {:.0} inserts/s ({} faces now)",
        20_000.0 / s,
        ix.len()
    );
    println!("load average at the end: {}", load_average());
}
