//! The numbers the benchmarks print: quantiles of latency samples and the
//! rate and latency of a load run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The value at quantile `q` (0-1, nearest rank) of `sorted`, which must be
/// in ascending order; NaN when it is empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    sorted[(last as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// What a load run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSummary {
    /// Faces answered per second of wall time.
    pub faces_per_s: f64,
    /// Median latency of a call, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of a call, ms.
    pub p99_ms: f64,
}

/// A comma-separated list of counts given to `flag` (`--callers 1,8,32`).
pub fn counts(flag: &str, value: &str) -> Result<Vec<usize>, String> {
    value
        .split(',')
        .map(|t| t.trim().parse().map_err(|e| format!("{flag}: {e}")))
        .collect()
}

/// Makes `calls` calls from `callers` threads at once, each thread taking
/// the next call number as it finishes one: `call(caller, i)` returns the
/// faces call `i` answered. The calls' rate and latency.
pub fn drive(
    callers: usize,
    calls: usize,
    call: impl Fn(usize, usize) -> usize + Sync,
) -> LoadSummary {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<(usize, f64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|caller| {
                let (next, call) = (&next, &call);
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= calls {
                            return out;
                        }
                        let t = Instant::now();
                        let faces = call(caller, i);
                        out.push((faces, t.elapsed().as_secs_f64() * 1e3));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    summarize(&results, started.elapsed().as_secs_f64())
}

/// Summarises calls given as (faces answered, latency ms), made over
/// `elapsed_s` seconds of wall time.
pub fn summarize(calls: &[(usize, f64)], elapsed_s: f64) -> LoadSummary {
    let faces: usize = calls.iter().map(|c| c.0).sum();
    let mut ms: Vec<f64> = calls.iter().map(|c| c.1).collect();
    ms.sort_by(f64::total_cmp);
    LoadSummary {
        faces_per_s: faces as f64 / elapsed_s,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 100.0);
        assert_eq!(percentile(&v, 1.0), 101.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn counts_are_parsed_or_refused_naming_the_flag() {
        assert_eq!(counts("--callers", "1, 8,32"), Ok(vec![1, 8, 32]));
        assert!(counts("--callers", "1,x")
            .unwrap_err()
            .starts_with("--callers: "));
    }

    #[test]
    fn every_call_is_made_once() {
        let made = std::sync::Mutex::new(Vec::new());
        let load = drive(3, 10, |_, i| {
            made.lock().unwrap().push(i);
            1
        });
        let mut made = made.into_inner().unwrap();
        made.sort_unstable();
        assert_eq!(made, (0..10).collect::<Vec<_>>());
        assert!(load.faces_per_s > 0.0);
    }

    #[test]
    fn a_summary_counts_faces_not_calls() {
        let s = summarize(&[(2, 30.0), (0, 10.0), (1, 20.0)], 0.5);
        assert_eq!(s.faces_per_s, 6.0);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p99_ms, 30.0);
    }
}
