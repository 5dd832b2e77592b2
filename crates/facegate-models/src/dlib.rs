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
    /// The file ends in the middle of an item.
    #[error("unexpected end of data at byte {offset} while reading {what}")]
    UnexpectedEof {
        /// Byte offset where the item started.
        offset: usize,
        /// The item being read.
        what: &'static str,
    },
    /// A packed integer whose control byte is invalid (zero length or more
    /// bytes than the integer type holds).
    #[error("malformed integer at byte {offset} (control byte {control:#04x})")]
    BadInteger {
        /// Byte offset of the control byte.
        offset: usize,
        /// The control byte read.
        control: u8,
    },
    /// A well-formed integer outside what its field allows (a type's range
    /// or a sanity bound such as a kernel size).
    #[error("integer {value} at byte {offset} is out of range for {what}")]
    OutOfRange {
        /// Byte offset of the integer.
        offset: usize,
        /// The value read.
        value: i128,
        /// The field it was read for.
        what: &'static str,
    },
    /// A `bool` byte other than ASCII `'0'` or `'1'`.
    #[error("malformed bool at byte {offset} (byte {byte:#04x})")]
    BadBool {
        /// Byte offset of the bool.
        offset: usize,
        /// The byte read.
        byte: u8,
    },
    /// A float in dlib's pre-2013 ASCII encoding, which facegate does not
    /// read (none of the models it converts use it).
    #[error("unsupported legacy ASCII float at byte {offset}")]
    LegacyFloat {
        /// Byte offset of the float.
        offset: usize,
    },
    /// A length prefix that promises more data than the file has left;
    /// refused before anything is allocated.
    #[error("{what} needs {needed} bytes but only {remaining} remain (byte {offset})")]
    TooLarge {
        /// Byte offset of the length prefix.
        offset: usize,
        /// The item whose length it is.
        what: &'static str,
        /// The least number of bytes the declared length needs.
        needed: u128,
        /// Bytes left in the file.
        remaining: usize,
    },
    /// A tag, version or layer name other than the expected one(s).
    #[error("unexpected {what} {found:?} at byte {offset}")]
    Unexpected {
        /// Byte offset of the item.
        offset: usize,
        /// What was expected there.
        what: &'static str,
        /// What was found instead.
        found: String,
    },
    /// A valid dlib network that is not the architecture the converter
    /// knows (other input size, layer type or loss).
    #[error("unsupported dlib network: {0}")]
    Unsupported(String),
    /// A network whose parts are inconsistent (e.g. parameter counts that do
    /// not match the layer's shape).
    #[error("invalid dlib model: {0}")]
    Invalid(String),
    /// Bytes left after the last item: the file is not what it claims to be.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// The shape predictor read fine but facegate-vision refused its trees.
    #[error(transparent)]
    Landmarks(#[from] facegate_vision::landmarks::LandmarkError),
}
