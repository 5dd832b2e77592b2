//! The vision engine: every model facegate runs, and the per-image pipeline
//! that chains them (detect → landmarks → pose → align → embed → spoof → mask).

pub mod align;
pub mod detect;
pub mod error;
pub mod geometry;
pub mod landmarks;
pub mod runtime;
pub mod spoof;

pub use error::{Result, VisionError};
