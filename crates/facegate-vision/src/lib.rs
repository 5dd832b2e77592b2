//! The vision engine: every model facegate runs, and the per-image pipeline
//! that chains them (detect → landmarks → pose → align → embed → spoof → mask).

pub mod align;
pub mod batch;
pub mod calibration;
pub mod detect;
pub mod embedder;
pub mod error;
pub mod files;
pub mod geometry;
pub mod landmarks;
pub mod liveness;
pub mod manifest;
pub mod mask;
pub mod pipeline;
pub mod pose;
pub mod quality;
pub mod runtime;
pub mod spoof;

pub use embedder::Embedder;
pub use error::{Result, VisionError};
