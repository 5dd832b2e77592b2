//! File names inside a model directory, shared by the installer that writes
//! them and the engine that loads them.

/// Manifest written last by `facegate models install`.
pub const MANIFEST: &str = "manifest.json";
/// YuNet 2023mar face detector (ONNX, copied verbatim).
pub const DETECTOR: &str = "face_detection_yunet_2023mar.onnx";
/// dlib ResNet face embedder converted to ONNX.
pub const EMBEDDER: &str = "dlib_face_recognition_resnet_v1.onnx";
/// SFace face embedder (OpenCV Zoo 2021dec), dequantised to fp32 ONNX.
pub const SFACE_EMBEDDER: &str = "face_recognition_sface_2021dec.onnx";
/// dlib 5-point shape predictor in facegate's own format.
pub const LANDMARKS: &str = "shape_predictor_5.fgsp";
/// MiniFASNetV2 (crop scale 2.7) converted to ONNX.
pub const SPOOF_V2: &str = "minifasnet_v2_2.7.onnx";
/// MiniFASNetV1SE (crop scale 4.0) converted to ONNX.
pub const SPOOF_V1SE: &str = "minifasnet_v1se_4.0.onnx";
/// Folder holding the ONNX Runtime shared library.
pub const ONNXRUNTIME_DIR: &str = "onnxruntime";
/// Folder holding ONNX Runtime's GPU build and the CUDA libraries it loads
/// (`facegate models install --gpu`), with its own manifest.
pub const ONNXRUNTIME_GPU_DIR: &str = "onnxruntime-gpu";
/// Folder with every model's licence and attribution.
pub const LICENSES_DIR: &str = "licenses";
/// Folder with the verified upstream files the models were converted from.
pub const SOURCES_DIR: &str = "sources";
/// The dlib embedding model's version string (stored with every face).
pub const EMBEDDER_VERSION: &str = "dlib-resnet-v1";
/// The SFace embedding model's version string (stored with every face).
pub const SFACE_EMBEDDER_VERSION: &str = "sface-2021dec";
