//! The face embedding models an [`Engine`](crate::pipeline::Engine) can run,
//! each with the version string stored beside every registered face and its
//! own cosine → 0–100 similarity calibration.

use std::str::FromStr;

use crate::calibration::{self, Calibration};
use crate::error::VisionError;
use crate::files;

/// A face embedding model. Embeddings of different models cannot be
/// compared; a face group is tied to the [`Embedder::version`] it was built
/// with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Embedder {
    /// SFace (OpenCV Zoo 2021dec, MobileFaceNet trained with the SFace
    /// loss): 112×112 ArcFace-aligned chip, 128-d. The recommended default:
    /// more accurate on unconstrained photos than dlib and faster.
    Sface,
    /// dlib's ResNet v1: 150×150 dlib-aligned chip, 128-d. Kept for the face
    /// groups created with it.
    Dlib,
}

impl Embedder {
    /// Every embedder, the recommended default first.
    pub const ALL: [Embedder; 2] = [Embedder::Sface, Embedder::Dlib];

    /// The version string stored with every face embedded by this model
    /// (`"sface-2021dec"`, `"dlib-resnet-v1"`).
    pub fn version(self) -> &'static str {
        match self {
            Embedder::Sface => files::SFACE_EMBEDDER_VERSION,
            Embedder::Dlib => files::EMBEDDER_VERSION,
        }
    }

    /// The embedder whose [`version`](Self::version) is `version`.
    pub fn from_version(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.version() == version)
    }

    /// Short name as in configuration files (`"sface"`, `"dlib"`).
    pub fn name(self) -> &'static str {
        match self {
            Embedder::Sface => "sface",
            Embedder::Dlib => "dlib",
        }
    }

    /// The model file in the model directory.
    pub fn model_file(self) -> &'static str {
        match self {
            Embedder::Sface => files::SFACE_EMBEDDER,
            Embedder::Dlib => files::EMBEDDER,
        }
    }

    /// Length of the (L2-normalised) embedding.
    pub fn dimension(self) -> usize {
        128
    }

    /// The cosine → 0–100 similarity mapping fitted for this model.
    pub fn calibration(self) -> &'static Calibration {
        match self {
            Embedder::Sface => &calibration::SFACE,
            Embedder::Dlib => &calibration::DLIB,
        }
    }

    /// Similarity 0–100 of two of this model's embeddings with cosine
    /// `cosine`; 80 ≈ false-accept rate 1e-3, 90 ≈ 1e-4 (docs/models.md).
    pub fn similarity(self, cosine: f32) -> f32 {
        self.calibration().similarity(cosine)
    }

    /// The cosine at which [`similarity`](Self::similarity) equals
    /// `similarity` (the inverse mapping, for thresholds).
    pub fn cosine_for_similarity(self, similarity: f32) -> f32 {
        self.calibration().cosine_for_similarity(similarity)
    }
}

impl std::fmt::Display for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Embedder {
    type Err = VisionError;
    /// Accepts the short name or the version string.
    fn from_str(s: &str) -> Result<Self, VisionError> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s || e.version() == s)
            .ok_or_else(|| {
                VisionError::InvalidInput(format!(
                    "unknown embedder {s:?} (expected sface or dlib)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_round_trip() {
        for e in Embedder::ALL {
            assert_eq!(Embedder::from_version(e.version()), Some(e));
            assert_eq!(e.name().parse::<Embedder>().unwrap(), e);
            assert_eq!(e.version().parse::<Embedder>().unwrap(), e);
        }
        assert_eq!(Embedder::Sface.version(), "sface-2021dec");
        assert_eq!(Embedder::Dlib.version(), "dlib-resnet-v1");
        assert!("arcface".parse::<Embedder>().is_err());
        assert_eq!(Embedder::from_version("m1"), None);
    }
}
