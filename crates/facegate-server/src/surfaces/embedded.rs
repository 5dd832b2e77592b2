//! Files compiled into the binary and served as they are (the `/docs` page
//! and the console): each with its content type, a Content-Security-Policy
//! that lets it load nothing from elsewhere, and no MIME sniffing.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

/// An HTML page, script or style sheet of ours.
pub struct Embedded {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Content-Security-Policy`.
    pub csp: &'static str,
}

impl Embedded {
    /// The response carrying `body`.
    pub fn respond(&self, body: impl Into<axum::body::Body>) -> Response {
        let mut resp = body.into().into_response();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(self.csp),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        resp
    }
}

/// `Content-Type` of our HTML.
pub const HTML: &str = "text/html; charset=utf-8";
/// `Content-Type` of our scripts.
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
/// `Content-Type` of our style sheets.
pub const CSS: &str = "text/css; charset=utf-8";
