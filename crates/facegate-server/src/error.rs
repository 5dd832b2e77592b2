//! The crate's typed errors. Each HTTP surface maps [`ServiceError`] onto
//! its wire format in exactly one function.

use std::path::PathBuf;

use facegate_image::ImageError;
use facegate_store::StoreError;

use crate::analyzer::AnalyzerError;

/// The configuration file or its handling failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config: {0}")]
    Parse(String),
    /// Parsed, but a value is out of its domain.
    #[error("config: {0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The OS random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// Which image of a request an image error is about; compare names it in
/// the result message (`...:Source` / `...:Target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRole {
    /// `image` (detect, register, search, spoofing) or `compareImage`.
    Image,
    /// Compare's `sourceImage`.
    Source,
    /// Compare's `targetImage`.
    Target,
}

impl ImageRole {
    /// The suffix compare appends to image error names.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            ImageRole::Image => None,
            ImageRole::Source => Some("Source"),
            ImageRole::Target => Some("Target"),
        }
    }
}

/// Everything a request can fail with, independent of the wire format.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request parameter is missing, malformed or out of range; also a
    /// required face that was not found. The text is safe to show clients.
    #[error("{0}")]
    InvalidParam(String),
    /// The face a request needs (search, compare source, verify, Argos
    /// liveness) is not in the image; names the image field.
    #[error("no face found in {0}")]
    NoFace(&'static str),
    /// The API key (or appKey) did not authenticate.
    #[error("unauthorized")]
    Unauthorized,
    /// An image could not be loaded or decoded.
    #[error("{role:?} image: {source}")]
    Image {
        /// Which image.
        role: ImageRole,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// `aligned: true` with an image that is not 224x224.
    #[error("an aligned image must be {expected}x{expected}, got {width}x{height}")]
    AlignedSize {
        /// Required side.
        expected: u32,
        /// Actual width.
        width: u32,
        /// Actual height.
        height: u32,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vision engine failed.
    #[error(transparent)]
    Analyzer(#[from] AnalyzerError),
    /// Models or gallery are still loading.
    #[error("the server is starting; models are not loaded yet")]
    NotReady,
    /// Too much is in progress (decode memory, connections); retry later.
    #[error("the server is busy; retry shortly")]
    Overloaded,
    /// A bug or a crashed worker; details only in the logs.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A client-facing description of an image error, in our own words: never
/// a library's message (decoder internals can name files or versions) nor
/// the reason a URL was refused (which private address a host resolved to
/// would help map the operator's network). The precise cause is logged at
/// debug level.
pub fn image_error_text(e: &ImageError) -> String {
    tracing::debug!(reason = %e, "image refused");
    match e {
        ImageError::TooLarge { max_bytes } => format!("image is larger than {max_bytes} bytes"),
        ImageError::TooManyPixels { max_pixels, .. } => {
            format!("image has more than {max_pixels} pixels")
        }
        ImageError::InvalidFormat => "image is neither PNG nor JPEG".into(),
        ImageError::Decode(_) => "image could not be decoded (corrupt or truncated)".into(),
        ImageError::InvalidBase64(_) => "image data is not valid Base64".into(),
        ImageError::TooSmall {
            width,
            height,
            min_side,
        } => format!("image is {width}x{height}; both sides must be at least {min_side} px"),
        ImageError::InvalidUrl(_) => "the image URL is not allowed or could not be fetched".into(),
        ImageError::Timeout => "image download timed out".into(),
        ImageError::OverBudget { needed, .. } => format!(
            "image needs {} MiB to decode, more than this server's decode memory budget",
            needed.div_ceil(1 << 20)
        ),
        _ => "image could not be loaded".into(),
    }
}

impl ServiceError {
    /// `InvalidParam` from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        ServiceError::InvalidParam(msg.into())
    }
}

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The models could not be loaded.
    #[error("models: {0}")]
    Analyzer(#[from] AnalyzerError),
    /// Binding or serving the socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data directory's key file and database do not belong together
    /// (one is missing, or the key is another database's); the text says
    /// which files and what to do.
    #[error("{0}")]
    DataDir(String),
    /// Loading the models or opening the store failed; the text says why.
    #[error("start-up failed: {0}")]
    StartUp(String),
    /// A background task died.
    #[error("internal: {0}")]
    Internal(String),
}
