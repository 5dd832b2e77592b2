//! The vision engine's error type.

/// Everything that can go wrong inside the vision engine.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The requested runtime cannot be used (library missing, failed to load).
    #[error("runtime unavailable: {0}")]
    RuntimeUnavailable(String),
    /// A model file could not be loaded or prepared by the runtime.
    #[error("cannot load model {model}: {reason}")]
    ModelLoad { model: String, reason: String },
    /// Running a model failed.
    #[error("inference failed in {model}: {reason}")]
    Inference { model: String, reason: String },
    /// A model file or input does not have the expected shape or contents.
    #[error("invalid model data: {0}")]
    InvalidModel(String),
    /// A model file is missing from the model directory.
    #[error("model file missing: {0} (run `facegate models install`)")]
    MissingModel(String),
    /// Input image is unusable (e.g. zero-sized).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;
