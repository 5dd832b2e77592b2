//! facegate's shared vocabulary for a face.
//!
//! One box, one point, one pose, one liveness verdict, one spoof
//! condition, one runtime kind and one [`Face`], used by the vision
//! engine, the store, the server and the CLI alike, plus the rules that
//! must read the same everywhere ([`rank_faces`], [`cosine_similarity`]).
//! Nothing here knows about models, databases or wire formats.

#![warn(missing_docs)]

mod face;
mod geometry;
mod liveness;

pub use face::{cosine_similarity, rank_faces, Face, MAX_FACES};
pub use geometry::{FaceBox, FivePoints, Point};
pub use liveness::{Liveness, QualityIssue, SpoofCondition};

use serde::{Deserialize, Serialize};

/// Head pose in degrees.
///
/// Conventions (image axes: x right, y down): roll > 0 is a clockwise
/// in-plane rotation; yaw > 0 means the nose points to the image's right;
/// pitch > 0 means the nose points down.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Pose {
    /// Left/right turn (the API's `orientation.x`).
    pub yaw: f32,
    /// Up/down nod (the API's `orientation.y`).
    pub pitch: f32,
    /// In-plane rotation (the API's `orientation.z`).
    pub roll: f32,
}

/// Which inference runtime runs the models, as the config names it
/// (`runtime = "auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// ONNX Runtime when its library is installed, else tract.
    #[default]
    Auto,
    /// ONNX Runtime on the CPU.
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
    /// ONNX Runtime with the CUDA execution provider.
    Cuda,
    /// The pure-Rust tract runtime.
    Tract,
}

impl RuntimeKind {
    /// Every kind, in the order the config documents them.
    pub const ALL: [RuntimeKind; 4] = [
        RuntimeKind::Auto,
        RuntimeKind::OnnxRuntime,
        RuntimeKind::Cuda,
        RuntimeKind::Tract,
    ];

    /// The config's spelling.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Auto => "auto",
            RuntimeKind::OnnxRuntime => "onnxruntime",
            RuntimeKind::Cuda => "cuda",
            RuntimeKind::Tract => "tract",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuntimeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown runtime {s:?} (expected auto, onnxruntime, cuda or tract)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_kinds_round_trip_through_their_names() {
        for k in RuntimeKind::ALL {
            assert_eq!(k.name().parse::<RuntimeKind>(), Ok(k));
        }
        assert!("gpu".parse::<RuntimeKind>().is_err());
    }
}
