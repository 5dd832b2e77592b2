//! Size limits of requests, and reading a body within them.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use facegate_image::{ImageError, Limits};

use crate::error::{ImageRole, ServiceError};

/// Body limit of requests carrying one image: a 3,000,000-byte image is
/// 4,000,000 Base64 characters; the rest is JSON and line breaks.
pub const BODY_LIMIT: usize = 4_300_000;
/// Body limit of compare, which carries two images.
pub const COMPARE_BODY_LIMIT: usize = 2 * BODY_LIMIT;
/// Longest request target accepted; longer ones are answered in the
/// surface's format (hyper itself cuts targets over 64 KiB with a bare 414).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Most header bytes (names and values) accepted; hyper cuts heads over
/// about 400 KB with a bare 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 100;

/// The body limit of a route (by path): compare carries two images.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/nhn-face-reco/") && path.ends_with("/compare") {
        COMPARE_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// What a body over its limit is: an oversized image (the only way a
/// request of these APIs gets that big).
pub fn too_large() -> ServiceError {
    ServiceError::Image {
        role: ImageRole::Image,
        source: ImageError::TooLarge {
            max_bytes: Limits::default().max_bytes,
        },
    }
}

/// The body, or ImageTooLarge when it is over the route's limit. A body
/// that breaks off (bad chunking, shorter than its Content-Length, stalled
/// past the body timeout) is a malformed request.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ServiceError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => too_large(),
        _ => ServiceError::invalid("the request body is malformed or incomplete"),
    })
}
