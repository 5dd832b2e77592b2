//! The numbers the benchmarks print: quantiles of latency samples and the
//! rate and latency of a load run.

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
    fn a_summary_counts_faces_not_calls() {
        let s = summarize(&[(2, 30.0), (0, 10.0), (1, 20.0)], 0.5);
        assert_eq!(s.faces_per_s, 6.0);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p99_ms, 30.0);
    }
}
