//! Model provisioning and conversion. Every upstream format is read by our own
//! code and turned into ONNX (neural networks) or a facegate-owned format
//! (the landmark regression trees).

#![warn(missing_docs)]

pub mod dlib;
pub mod minifasnet;
pub mod provision;
pub mod sface;
pub mod torch_legacy;
