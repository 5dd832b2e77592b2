//! The port between the HTTP service and the vision engine.
//!
//! The service only needs "analyse this image", "liveness of this aligned
//! crop", the model version and the similarity calibration; keeping that
//! behind a small trait lets the business rules be unit-tested without
//! loading models. Production uses [`crate::engine`]'s implementation for
//! `facegate_vision`'s engine.

pub use facegate_core::{Face, Liveness, SpoofCondition};
use facegate_image::RgbImage;

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
    pub spoofing: Option<SpoofCondition>,
    /// Apply the liveness quality gate (size, pose, blur, exposure) and
    /// report each face's [`Face::quality_issue`].
    pub quality_gate: bool,
    /// Analyse only the largest this many faces (`None`: all), for callers
    /// that use the largest face alone.
    pub max_faces: Option<usize>,
    /// Embed only the largest this many faces (`None`: all); the others
    /// come back without an embedding.
    pub max_embeddings: Option<usize>,
    /// Whose work this is ([`crate::service::Lane`]): batches of faces from
    /// concurrent requests take lanes in turn.
    pub lane: u64,
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

/// Runs of the per-face networks and the faces they carried, summed over
/// the networks (for monitoring: faces / runs is the mean batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Network runs, batches of one included.
    pub runs: u64,
    /// Faces those runs carried.
    pub faces: u64,
    /// The largest batch run.
    pub largest: usize,
}

/// What the service needs from a vision engine.
pub trait FaceAnalyzer: Send + Sync {
    /// Detects faces, ranked by [`facegate_core::rank_faces`] (largest
    /// first, at most [`facegate_core::MAX_FACES`]), and runs the requested
    /// stages on each, and only those; geometry in pixels of `image`.
    fn analyze(
        &self,
        image: &RgbImage,
        request: &AnalyzeRequest,
    ) -> Result<Vec<Face>, AnalyzerError>;

    /// Liveness of an aligned face crop (the whole image is the face),
    /// analysed in `lane` (see [`AnalyzeRequest::lane`]).
    fn spoof_aligned(
        &self,
        crop: &RgbImage,
        condition: SpoofCondition,
        lane: u64,
    ) -> Result<Liveness, AnalyzerError>;

    /// Version strings of the embedding models loaded, the preferred one
    /// first.
    fn models(&self) -> Vec<String>;

    /// The inference runtime in use (a short fixed name, for monitoring).
    fn runtime(&self) -> &'static str {
        "unknown"
    }

    /// What cross-request batching has done so far; `None` when the
    /// runtime does not batch.
    fn batch_counts(&self) -> Option<BatchCounts> {
        None
    }

    /// Maps a cosine similarity of two embeddings of `model` to the API's
    /// 0-100 scale (monotonic; each model has its own calibration).
    fn similarity(&self, model: &str, cosine: f32) -> f32;

    /// Inverse of [`FaceAnalyzer::similarity`]: the cosine at which a 0-100
    /// threshold is reached for `model`.
    fn cosine_for_similarity(&self, model: &str, similarity: f32) -> f32;
}
