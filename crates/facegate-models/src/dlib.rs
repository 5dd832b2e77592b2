//! dlib model support: a reader for dlib's serialization format, a converter
//! from dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`)
//! to ONNX, and a reader for `shape_predictor_5_face_landmarks.dat` that builds a
//! [`facegate_vision::landmarks::ShapePredictor`].
//!
//! The format follows dlib 19.24's headers (`dlib/serialize.h`,
//! `dlib/dnn/{core,layers,input,loss}.h`, `dlib/cuda/tensor.h`,
//! `dlib/image_processing/shape_predictor.h`).

pub mod reader;
mod resnet;
mod shape;

pub use resnet::{convert_resnet, RESNET_INPUT_SIZE};
pub use shape::read_shape_predictor;

/// Errors reading or converting a dlib file.
#[derive(Debug, thiserror::Error)]
pub enum DlibError {
    #[error("unexpected end of data at byte {offset} while reading {what}")]
    UnexpectedEof { offset: usize, what: &'static str },
    #[error("malformed integer at byte {offset} (control byte {control:#04x})")]
    BadInteger { offset: usize, control: u8 },
    #[error("integer {value} at byte {offset} is out of range for {what}")]
    OutOfRange {
        offset: usize,
        value: i128,
        what: &'static str,
    },
    #[error("malformed bool at byte {offset} (byte {byte:#04x})")]
    BadBool { offset: usize, byte: u8 },
    #[error("unsupported legacy ASCII float at byte {offset}")]
    LegacyFloat { offset: usize },
    #[error("{what} needs {needed} bytes but only {remaining} remain (byte {offset})")]
    TooLarge {
        offset: usize,
        what: &'static str,
        needed: u128,
        remaining: usize,
    },
    #[error("unexpected {what} {found:?} at byte {offset}")]
    Unexpected {
        offset: usize,
        what: &'static str,
        found: String,
    },
    #[error("unsupported dlib network: {0}")]
    Unsupported(String),
    #[error("invalid dlib model: {0}")]
    Invalid(String),
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    #[error(transparent)]
    Landmarks(#[from] facegate_vision::landmarks::LandmarkError),
}
