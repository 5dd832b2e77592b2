//! Pixel-space geometry shared by every stage: facegate-core's types.

pub use facegate_core::{FaceBox, FivePoints, Point};

/// The box type's former name in this crate.
pub type BoxF = FaceBox;
