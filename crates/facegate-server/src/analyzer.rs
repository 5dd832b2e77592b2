//! The port between the HTTP service and the vision engine.
//!
//! The service only needs "analyse this image", "liveness of this aligned
//! crop", the model version and the similarity calibration; keeping that
//! behind a small trait lets the business rules be unit-tested without
//! loading models. Production uses [`crate::engine`]'s implementation for
//! `facegate_vision`'s engine.

use facegate_image::RgbImage;

/// Liveness sensitivity (`spoofingCondition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoofingCondition {
    /// Flags the fewest faces as spoofs.
    Weak,
    /// The default.
    #[default]
    Balanced,
    /// Flags the most faces as spoofs.
    Strict,
}

impl SpoofingCondition {
    /// Parses the wire value (`weak`, `balanced`, `strict`; exact case).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "weak" => Some(Self::Weak),
            "balanced" => Some(Self::Balanced),
            "strict" => Some(Self::Strict),
            _ => None,
        }
    }
}

/// Which optional stages to run per face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeRequest {
    /// Compute the embedding with this model (its version string, one of
    /// [`FaceAnalyzer::models`]); `None`: no embedding.
    pub embedding: Option<String>,
    /// Estimate yaw/pitch/roll.
    pub orientation: bool,
    /// Classify mask wearing.
    pub mask: bool,
    /// Run liveness at this sensitivity.
    pub spoofing: Option<SpoofingCondition>,
}

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PixelPoint {
    /// Horizontal, pixels from the left.
    pub x: f32,
    /// Vertical, pixels from the top.
    pub y: f32,
}

/// A box in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PixelBox {
    /// Left.
    pub x0: f32,
    /// Top.
    pub y0: f32,
    /// Right.
    pub x1: f32,
    /// Bottom.
    pub y1: f32,
}

impl PixelBox {
    /// Area in square pixels (0 for degenerate boxes).
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }
}

/// Head pose in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadPose {
    /// Left/right (API `orientation.x`).
    pub yaw: f32,
    /// Up/down (API `orientation.y`).
    pub pitch: f32,
    /// In-plane rotation (API `orientation.z`).
    pub roll: f32,
}

/// Liveness verdict of one face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Liveness {
    /// Probability in [0, 1] that the face is a live person.
    pub real_probability: f32,
    /// The verdict at the requested sensitivity.
    pub is_spoof: bool,
}

/// One detected face.
#[derive(Clone, PartialEq)]
pub struct AnalyzedFace {
    /// Box in pixels of the analysed image.
    pub bbox: PixelBox,
    /// Landmarks in the API's order: leftEye, rightEye, nose, leftLip,
    /// rightLip, where "left" is the point with the smaller x.
    pub landmarks: [PixelPoint; 5],
    /// Detection confidence in [0, 1].
    pub confidence: f32,
    /// Present when orientation was requested.
    pub pose: Option<HeadPose>,
    /// Present when mask was requested.
    pub mask: Option<bool>,
    /// Present when spoofing was requested.
    pub liveness: Option<Liveness>,
    /// L2-normalised embedding, present when requested.
    pub embedding: Option<Vec<f32>>,
}

// Embeddings are biometric data: keep them out of debug output and logs.
impl std::fmt::Debug for AnalyzedFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzedFace")
            .field("bbox", &self.bbox)
            .field("confidence", &self.confidence)
            .field("pose", &self.pose)
            .field("mask", &self.mask)
            .field("liveness", &self.liveness)
            .field("embedding", &self.embedding.as_ref().map(|e| e.len()))
            .finish_non_exhaustive()
    }
}

/// Why an analysis failed. The text of either variant is for logs only:
/// it may name models, files or library internals.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    /// One detected face could not be analysed: its landmarks or crop are
    /// unusable (say, non-finite landmarks on a degenerate detection). The
    /// input's fault, not the server's: clients get a parameter error.
    #[error("a detected face could not be analysed: {0}")]
    Face(String),
    /// The engine itself failed (model, runtime, or a bug): an internal
    /// error.
    #[error("{0}")]
    Engine(String),
}

/// What the service needs from a vision engine.
pub trait FaceAnalyzer: Send + Sync {
    /// Detects up to 20 faces, largest first, and runs the requested stages.
    fn analyze(
        &self,
        image: &RgbImage,
        request: &AnalyzeRequest,
    ) -> Result<Vec<AnalyzedFace>, AnalyzerError>;

    /// Liveness of an aligned face crop (the whole image is the face).
    fn spoof_aligned(
        &self,
        crop: &RgbImage,
        condition: SpoofingCondition,
    ) -> Result<Liveness, AnalyzerError>;

    /// Version strings of the embedding models loaded, the preferred one
    /// first.
    fn models(&self) -> Vec<String>;

    /// Maps a cosine similarity of two embeddings of `model` to the API's
    /// 0-100 scale (monotonic; each model has its own calibration).
    fn similarity(&self, model: &str, cosine: f32) -> f32;

    /// Inverse of [`FaceAnalyzer::similarity`]: the cosine at which a 0-100
    /// threshold is reached for `model`.
    fn cosine_for_similarity(&self, model: &str, similarity: f32) -> f32;
}
