//! The crate's error type.

use std::net::IpAddr;

/// Why an image could not be turned into pixels.
///
/// Suggested mapping onto the API contract's codes:
///
/// | variant | NHN code |
/// | --- | --- |
/// | [`TooLarge`](Self::TooLarge) | ImageTooLarge (-45020) |
/// | [`InvalidFormat`](Self::InvalidFormat), [`Decode`](Self::Decode) | InvalidImageFormat (-45040) |
/// | [`TooSmall`](Self::TooSmall), [`InvalidBase64`](Self::InvalidBase64) | InvalidParam (-40000) |
/// | [`TooManyPixels`](Self::TooManyPixels) | ImageTooLarge (-45020); the contract names no code |
/// | [`InvalidUrl`](Self::InvalidUrl) | InvalidImageURL (-45050) |
/// | [`Timeout`](Self::Timeout) | ImageTimeout (-45060) |
/// | [`OverBudget`](Self::OverBudget) | ImageTooLarge (-45020): no amount of waiting makes it fit |
/// | [`Busy`](Self::Busy) | an overload answer (the server is out of decoding memory for now; retry) |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The encoded image is larger than allowed (after Base64 decoding or
    /// download).
    #[error("image is larger than {max_bytes} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        max_bytes: usize,
    },
    /// The bytes are neither PNG nor JPEG (judged by magic bytes only).
    #[error("image is neither PNG nor JPEG")]
    InvalidFormat,
    /// Width or height is below the minimum side length.
    #[error("image is {width}x{height}, both sides must be at least {min_side} px")]
    TooSmall {
        /// Width of the (orientation-corrected) image.
        width: u32,
        /// Height of the (orientation-corrected) image.
        height: u32,
        /// The configured minimum.
        min_side: u32,
    },
    /// The header declares more pixels than allowed; nothing was decoded.
    #[error("image header declares {width}x{height} pixels, more than {max_pixels}")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The configured maximum pixel count.
        max_pixels: u64,
    },
    /// The image is corrupt or truncated.
    #[error("image could not be decoded: {0}")]
    Decode(String),
    /// The `bytes` field is not valid standard Base64.
    #[error("invalid Base64 image data: {0}")]
    InvalidBase64(String),
    /// The URL was refused or could not be fetched.
    #[error("invalid image URL: {0}")]
    InvalidUrl(#[from] UrlError),
    /// The download did not finish within the configured time.
    #[error("image download timed out")]
    Timeout,
    /// Decoding would need more memory than the whole process-wide
    /// [`DecodeBudget`](crate::DecodeBudget); refused without waiting.
    #[error("image needs {needed} bytes to decode, more than the whole decoding budget of {budget} bytes")]
    OverBudget {
        /// Bytes the decode would hold at its peak.
        needed: u64,
        /// The budget's total.
        budget: u64,
    },
    /// The [`DecodeBudget`](crate::DecodeBudget) stayed too full for this
    /// image for the whole allowed wait: the server is overloaded, the
    /// image itself is fine.
    #[error("server busy: no room to decode {needed} more bytes within the {budget}-byte decoding budget")]
    Busy {
        /// Bytes the decode would hold at its peak.
        needed: u64,
        /// The budget's total.
        budget: u64,
    },
}

/// Why an image URL was refused or could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a parseable absolute URL.
    #[error("malformed URL")]
    Malformed,
    /// Scheme other than `http`/`https`.
    #[error("scheme must be http or https")]
    Scheme,
    /// Port other than 80, 443 or 10000-12000.
    #[error("port {0} is not allowed (80, 443, 10000-12000)")]
    Port(u16),
    /// `user:password@` in the URL, refused to keep host parsing unambiguous.
    #[error("credentials in URL are not allowed")]
    Userinfo,
    /// The host resolves to an address that may not be fetched.
    #[error("host resolves to a non-public address {0}")]
    ForbiddenAddress(IpAddr),
    /// The host name could not be resolved.
    #[error("host could not be resolved")]
    Resolve,
    /// No resolved address accepted a connection.
    #[error("host is unreachable")]
    Connect,
    /// TLS handshake failed (bad certificate, not TLS, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// HTTP protocol error while talking to the server.
    #[error("HTTP error: {0}")]
    Http(String),
    /// The server answered with a non-2xx status.
    #[error("server answered HTTP {0}")]
    Status(u16),
    /// A redirect without a usable `Location`.
    #[error("redirect without a valid Location")]
    BadRedirect,
    /// More redirects than the policy allows.
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
}
