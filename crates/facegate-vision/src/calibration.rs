//! From embedding cosine to the API's 0–100 similarity, one mapping per
//! embedder ([`DLIB`], [`SFACE`]; `Embedder::calibration`).
//!
//! Each mapping is piecewise linear through measured anchor points, so it is
//! strictly monotonic and a similarity threshold is a cosine threshold with a
//! known false-accept rate. The anchors are quantiles of the impostor cosines
//! of LFW (`shared/datasets/lfw_dev`: every pair of images of different
//! people, 23.75 M pairs), measured by `examples/lfw_eval.rs`; ORL is the
//! second check (`examples/calibrate.rs`); numbers in docs/models.md.
//!
//! | similarity | false-accept rate on LFW |
//! | --- | --- |
//! | 95 | 1e-5 |
//! | 90 | 1e-4 (strict operating point) |
//! | 80 | 1e-3 (balanced operating point) |
//! | 70 | 1e-2 |
//! | 50 | 1e-1 |
//! | 30 | 0.5 (the median impostor pair) |
//! | 100 | identical embeddings |

/// A cosine → 0–100 similarity mapping: piecewise linear through
/// (cosine, similarity) anchors strictly increasing in both, from (−1, 0) to
/// (1, 100).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub anchors: &'static [(f32, f32)],
}

/// dlib ResNet v1 (`dlib-resnet-v1`), fitted on LFW (docs/models.md).
pub const DLIB: Calibration = Calibration { anchors: &ANCHORS };

/// SFace (`sface-2021dec`), fitted on LFW (docs/models.md).
pub const SFACE: Calibration = Calibration {
    anchors: &SFACE_ANCHORS,
};

/// dlib's (cosine, similarity) anchors, strictly increasing in both: the
/// cosines above which 50 %, 10 %, 1 %, 0.1 %, 0.01 % and 0.001 % of LFW's
/// 23.75 M impostor pairs lie (`examples/lfw_eval.rs`, docs/models.md).
pub const ANCHORS: [(f32, f32); 8] = [
    (-1.0, 0.0),
    (0.8355, 30.0),
    (0.8781, 50.0),
    (0.9071, 70.0),
    (0.9258, 80.0),
    (0.9405, 90.0),
    (0.9524, 95.0),
    (1.0, 100.0),
];

/// SFace's (cosine, similarity) anchors, strictly increasing in both, at
/// the same LFW impostor quantiles as [`ANCHORS`].
pub const SFACE_ANCHORS: [(f32, f32); 8] = [
    (-1.0, 0.0),
    (0.0845, 30.0),
    (0.1979, 50.0),
    (0.2900, 70.0),
    (0.3574, 80.0),
    (0.4138, 90.0),
    (0.4647, 95.0),
    (1.0, 100.0),
];

impl Calibration {
    /// Similarity in [0, 100] for a cosine in [-1, 1] (clamped; NaN → 0).
    pub fn similarity(&self, cosine: f32) -> f32 {
        interpolate(self.anchors, cosine.clamp(-1.0, 1.0), |a| a.0, |a| a.1)
    }

    /// The cosine whose similarity is `similarity` (clamped to [0, 100]);
    /// the inverse of [`Calibration::similarity`].
    pub fn cosine_for_similarity(&self, similarity: f32) -> f32 {
        interpolate(self.anchors, similarity.clamp(0.0, 100.0), |a| a.1, |a| a.0)
    }
}

/// dlib's similarity ([`DLIB`]); kept for callers that predate the
/// per-embedder mappings. Use [`crate::embedder::Embedder::similarity`].
pub fn similarity(cosine: f32) -> f32 {
    DLIB.similarity(cosine)
}

/// dlib's inverse mapping ([`DLIB`]); see [`similarity`].
pub fn cosine_for_similarity(similarity: f32) -> f32 {
    DLIB.cosine_for_similarity(similarity)
}

fn interpolate(
    anchors: &[(f32, f32)],
    x: f32,
    from: impl Fn(&(f32, f32)) -> f32,
    to: impl Fn(&(f32, f32)) -> f32,
) -> f32 {
    if x.is_nan() {
        return to(&anchors[0]);
    }
    for pair in anchors.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if x <= from(b) {
            let t = (x - from(a)) / (from(b) - from(a));
            return to(a) + t * (to(b) - to(a));
        }
    }
    to(&anchors[anchors.len() - 1])
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// Cosine of two L2-normalised vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_monotonic_and_invertible() {
        for cal in [DLIB, SFACE] {
            assert_eq!(cal.anchors.first(), Some(&(-1.0, 0.0)));
            assert_eq!(cal.anchors.last(), Some(&(1.0, 100.0)));
            for w in cal.anchors.windows(2) {
                assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "{w:?}");
            }
            let mut last = -1.0;
            for i in 0..=2000 {
                let c = -1.0 + i as f32 / 1000.0;
                let s = cal.similarity(c);
                assert!((0.0..=100.0).contains(&s));
                assert!(s >= last);
                last = s;
                assert!(
                    (cal.cosine_for_similarity(s) - c).abs() < 1e-4,
                    "{c} -> {s}"
                );
            }
            assert_eq!(cal.similarity(1.0), 100.0);
            assert_eq!(cal.similarity(f32::NAN), 0.0);
        }
        assert_eq!(similarity(0.934), DLIB.similarity(0.934));
    }

    #[test]
    fn normalizes() {
        let v = l2_normalize(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(l2_normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
