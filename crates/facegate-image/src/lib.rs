//! Image input for facegate: bytes, Base64 or a URL in; a bounded,
//! orientation-corrected RGB8 image out.
//!
//! What this crate guarantees:
//!
//! * [`decode`] accepts only PNG and JPEG, recognised by magic bytes. It reads
//!   the header first and refuses a declared pixel count above
//!   [`Limits::max_pixels`] before any pixel buffer is allocated, refuses
//!   truncated files (including JPEGs whose data ends long before their
//!   declared frame is filled, and JPEGs with more than 100 scans), applies
//!   the EXIF orientation and checks the minimum side on the corrected
//!   image. 16-bit, palette, grey and alpha PNGs are converted to RGB8 row by
//!   row, so the only full-size buffer is the result.
//! * [`inspect`] runs the same checks without decoding and reports
//!   [`ImageInfo::decode_bytes`], the peak memory [`decode`] will use, so
//!   that a process-wide [`DecodeBudget`] can be reserved first: images that
//!   could never fit are refused ([`ImageError::OverBudget`]), others wait
//!   for room up to a deadline ([`ImageError::Busy`]).
//! * [`decode_base64`] refuses an oversize payload from its encoded length,
//!   without decoding it.
//! * [`fetch`] downloads only over `http`/`https` to ports 80, 443 and
//!   10000–12000. Every address a host resolves to is classified
//!   ([`classify`]); unless [`FetchPolicy::allow_private`] is set, one
//!   non-public address refuses the URL. The connection goes to exactly an
//!   address that was checked (no second lookup, so no DNS-rebinding
//!   window), and every redirect hop is validated the same way. The whole
//!   download runs under one timeout and the body read stops at
//!   `max_bytes + 1`.
//!
//! Nothing here panics on malformed input. Decoding is CPU-bound (tens of
//! milliseconds per megapixel): async callers should run [`decode`] on a
//! blocking thread, holding a [`DecodePermit`] for `inspect(..)?.decode_bytes`
//! while it runs.

#![warn(missing_docs)]

mod addr;
mod b64;
mod budget;
mod decode;
mod error;
mod fetch;

pub use addr::{classify, is_allowed, AddressClass};
pub use b64::decode_base64;
pub use budget::{default_decode_budget, DecodeBudget, DecodePermit};
pub use decode::{decode, inspect, Format, ImageInfo, Limits};
pub use error::{ImageError, UrlError};
pub use fetch::{fetch, FetchPolicy};
pub use image::RgbImage;
