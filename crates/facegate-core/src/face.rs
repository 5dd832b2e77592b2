//! One detected face, and the rules on faces every layer shares.

use serde::Serialize;

use crate::{FaceBox, FivePoints, Liveness, Pose, QualityIssue};

/// Most faces any request reports or registers (the API's cap).
pub const MAX_FACES: usize = 20;

/// Everything the engine found out about one face, in pixels of the
/// analysed image. Optional stages are `None` when they did not run.
/// Serialises without the embedding.
#[derive(Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Face {
    /// Box.
    pub bbox: FaceBox,
    /// Landmarks in anatomical order (see [`FivePoints`]).
    pub landmarks: FivePoints,
    /// Detection confidence in [0, 1].
    pub confidence: f32,
    /// Head pose, when orientation was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
    /// Mask worn, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<bool>,
    /// Liveness, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Liveness>,
    /// Why the face is too small, turned, blurred or badly exposed to
    /// judge, when the quality gate was asked for and refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_issue: Option<QualityIssue>,
    /// L2-normalised embedding, when requested.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

impl Face {
    /// The face with its box and landmarks as fractions of a `width` ×
    /// `height` image (the API's and the store's unit) and its confidence
    /// clamped to [0, 1].
    pub fn fractions_of(&self, width: u32, height: u32) -> Face {
        Face {
            bbox: self.bbox.fractions_of(width, height),
            landmarks: self.landmarks.fractions_of(width, height),
            confidence: self.confidence.clamp(0.0, 1.0),
            ..self.clone()
        }
    }
}

// Embeddings are biometric data: keep them out of debug output and logs.
impl std::fmt::Debug for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Face")
            .field("bbox", &self.bbox)
            .field("confidence", &self.confidence)
            .field("pose", &self.pose)
            .field("mask", &self.mask)
            .field("liveness", &self.liveness)
            .field("embedding", &self.embedding.as_ref().map(|e| e.len()))
            .finish_non_exhaustive()
    }
}

/// Orders faces largest first (stable: equal areas keep their order) and
/// keeps at most [`MAX_FACES`]: which faces a request reports, registers or
/// searches with.
pub fn rank_faces<T>(faces: &mut Vec<T>, bbox: impl Fn(&T) -> FaceBox) {
    faces.sort_by(|a, b| bbox(b).area().total_cmp(&bbox(a).area()));
    faces.truncate(MAX_FACES);
}

/// Cosine similarity of two embeddings in [-1, 1], computed in f64; `None`
/// when their lengths differ or either has no direction (zero or
/// non-finite norm).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norm = (aa * bb).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    Some((ab / norm).clamp(-1.0, 1.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(side: f32) -> FaceBox {
        FaceBox {
            x0: 0.0,
            y0: 0.0,
            x1: side,
            y1: side,
        }
    }

    #[test]
    fn ranking_is_largest_first_stable_and_capped() {
        let mut faces: Vec<(usize, FaceBox)> = (0..30)
            .map(|i| (i, sized(if i % 2 == 0 { 10.0 } else { 20.0 })))
            .collect();
        rank_faces(&mut faces, |f| f.1);
        assert_eq!(faces.len(), MAX_FACES);
        let ids: Vec<usize> = faces.iter().map(|f| f.0).collect();
        let expected: Vec<usize> = (0..30)
            .filter(|i| i % 2 == 1)
            .chain((0..30).filter(|i| i % 2 == 0))
            .take(MAX_FACES)
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn cosine_is_scale_free_and_refuses_mismatches() {
        let c = cosine_similarity(&[1.0, 0.0], &[3.0, 3.0]).unwrap();
        assert!((c - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), None);
        assert_eq!(cosine_similarity(&[2.0, 0.0], &[-1.0, 0.0]), Some(-1.0));
    }
}
