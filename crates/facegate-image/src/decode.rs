//! Bounded PNG/JPEG decoding to RGB8.
//!
//! Decoding is split in two so that memory can be accounted for before it
//! is taken: [`inspect`] reads only headers and segment/chunk structure
//! (no pixel buffers) and says how many bytes [`decode`] will need at its
//! peak; [`decode`] then produces the pixels within that figure.

mod jpeg_file;
mod png_file;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::ImageError;

/// Bounds applied to every image before and while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted `width * height` as declared by the header.
    pub max_pixels: u64,
    /// Smallest accepted width and height of the corrected image.
    pub min_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 3_000_000,
            max_pixels: 40_000_000,
            min_side: 80,
        }
    }
}

/// An accepted encoded image format, recognised by magic bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// PNG (first frame of an APNG).
    Png,
    /// Baseline, extended-sequential or progressive Huffman-coded JPEG.
    Jpeg,
}

/// What [`inspect`] learned about an image without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageInfo {
    /// The encoded format.
    pub format: Format,
    /// Width of the image [`decode`] returns, i.e. after the EXIF
    /// orientation is applied.
    pub width: u32,
    /// Height of the image [`decode`] returns, after the EXIF orientation.
    pub height: u32,
    /// Upper bound of the heap memory [`decode`] holds at its peak for this
    /// image, in bytes: the RGB8 result (`width * height * 3`) plus any
    /// intermediate buffer (a second RGB8 buffer for a 90° rotation, a
    /// progressive JPEG's coefficients, row buffers, metadata copies).
    /// Reserve this much from a [`DecodeBudget`](crate::DecodeBudget)
    /// before decoding.
    pub decode_bytes: u64,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];

/// Small allocations every decode makes whatever the image (decoder
/// structs, Huffman and inflate tables): added to every estimate.
const FIXED_OVERHEAD: u64 = 256 << 10;

fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(PNG_MAGIC) {
        Some(Format::Png)
    } else if bytes.starts_with(JPEG_MAGIC) {
        Some(Format::Jpeg)
    } else {
        None
    }
}

fn decode_err(e: impl std::fmt::Display) -> ImageError {
    ImageError::Decode(e.to_string())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Everything [`decode`] needs from [`inspect`]'s header walk.
struct Plan {
    info: ImageInfo,
    orientation: Orientation,
    codec: Codec,
}

enum Codec {
    Png(png_file::Header),
    Jpeg(jpeg_file::Header),
}

/// Reads an image's headers and runs every check [`decode`] runs before it
/// allocates pixels; returns the displayed size and the memory decoding will
/// take.
///
/// Checks, in order: `limits.max_bytes` ([`ImageError::TooLarge`]); PNG or
/// JPEG magic ([`ImageError::InvalidFormat`]); a readable header with no zero
/// side; `limits.max_pixels` on the declared size
/// ([`ImageError::TooManyPixels`]); `limits.min_side`
/// ([`ImageError::TooSmall`]); then the file's structure, so that data that
/// cannot fill the declared frame is refused here rather than decoded into
/// grey ([`ImageError::Decode`]):
///
/// * PNG: every chunk present up to `IEND`, and enough compressed data for
///   the declared size (deflate expands at most 1032:1);
/// * JPEG: an end-of-image marker after the scans, at most 100 scans, every
///   component coded, and at least one bit per 8×8 block in every scan that
///   codes DC coefficients (see `jpeg_file` for why no valid file is refused).
///
/// Cost: a walk over chunk or segment headers and, for JPEG, one pass over
/// the bytes to find markers; nothing proportional to the pixel count.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<ImageInfo, ImageError> {
    plan(bytes, limits).map(|p| p.info)
}

fn plan(bytes: &[u8], limits: &Limits) -> Result<Plan, ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let format = sniff(bytes).ok_or(ImageError::InvalidFormat)?;
    match format {
        Format::Png => {
            let ihdr = png_file::read_ihdr(bytes)?;
            check_size(ihdr.width, ihdr.height, limits)?;
            let header = png_file::read_chunks(bytes, ihdr)?;
            let orientation = header.orientation;
            let extra = png_file::decoder_extra(&header);
            Ok(finish_plan(
                format,
                (header.ihdr.width, header.ihdr.height),
                orientation,
                extra,
                Codec::Png(header),
            ))
        }
        Format::Jpeg => {
            let frame = jpeg_file::read_frame(bytes)?;
            check_size(frame.width(), frame.height(), limits)?;
            let header = jpeg_file::read_scans(bytes, frame)?;
            let orientation = header.orientation;
            let extra = jpeg_file::decoder_extra(&header, bytes.len());
            let dims = (header.frame.width(), header.frame.height());
            Ok(finish_plan(
                format,
                dims,
                orientation,
                extra,
                Codec::Jpeg(header),
            ))
        }
    }
}

/// The checks every format shares, on the size the header declares.
fn check_size(width: u32, height: u32, limits: &Limits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(decode_err("image has a zero dimension"));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    // Orientation can swap the sides but not change the shorter one.
    if width.min(height) < limits.min_side {
        return Err(ImageError::TooSmall {
            width,
            height,
            min_side: limits.min_side,
        });
    }
    Ok(())
}

/// Whether applying `o` needs a second pixel buffer (a transposition cannot
/// be done in place); flips and 180° are done in place.
fn transposes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn finish_plan(
    format: Format,
    (w, h): (u32, u32),
    orientation: Orientation,
    decoder_extra: u64,
    codec: Codec,
) -> Plan {
    let rgb = u64::from(w) * u64::from(h) * 3;
    // The decoder's own buffers are freed before the orientation is
    // applied, so the two phases' extras do not add up.
    let orient_extra = if transposes(orientation) { rgb } else { 0 };
    let (width, height) = if transposes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    Plan {
        info: ImageInfo {
            format,
            width,
            height,
            decode_bytes: rgb + decoder_extra.max(orient_extra) + FIXED_OVERHEAD,
        },
        orientation,
        codec,
    }
}

/// Decodes a PNG or JPEG into RGB8 within `limits`.
///
/// Runs [`inspect`]'s checks first, so the declared size is checked against
/// `limits.max_pixels` and the file structure validated before any pixel
/// buffer is allocated; then decodes into a single RGB8 buffer: 16-bit PNG
/// samples are reduced to 8 bits row by row (rounded, as `image` does),
/// palettes expanded, grey replicated and alpha dropped (not composited)
/// while decoding, so no full-size 16-bit or RGBA copy ever exists. The EXIF
/// orientation is applied, so the returned width and height are those of the
/// image as it should be displayed. Peak memory stays within
/// [`ImageInfo::decode_bytes`].
///
/// This does not consult a [`DecodeBudget`](crate::DecodeBudget): callers
/// that share one reserve `inspect(..)?.decode_bytes` first.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbImage, ImageError> {
    let plan = plan(bytes, limits)?;
    // A decoder bug on hostile input must fail this request, not the worker.
    let rgb = std::panic::catch_unwind(|| decode_pixels(bytes, &plan))
        .unwrap_or_else(|_| Err(decode_err("decoder failed on malformed input")))?;
    if rgb.dimensions() != (plan.info.width, plan.info.height) {
        return Err(decode_err("decoded size differs from the header"));
    }
    Ok(rgb)
}

fn decode_pixels(bytes: &[u8], plan: &Plan) -> Result<RgbImage, ImageError> {
    let upright = match &plan.codec {
        Codec::Png(h) => png_file::decode(bytes, h)?,
        Codec::Jpeg(h) => jpeg_file::decode(bytes, h)?,
    };
    if plan.orientation == Orientation::NoTransforms {
        return Ok(upright);
    }
    let mut img = DynamicImage::ImageRgb8(upright);
    img.apply_orientation(plan.orientation);
    Ok(img.into_rgb8())
}

/// A zeroed buffer of `len` bytes, or an error instead of aborting the
/// process when the allocator refuses.
fn alloc_pixels(len: u64) -> Result<Vec<u8>, ImageError> {
    let len = usize::try_from(len).map_err(|_| decode_err("image too large to address"))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| decode_err(format!("could not allocate {len} bytes for pixels")))?;
    buf.resize(len, 0);
    Ok(buf)
}

/// The orientation an EXIF (TIFF) block asks for; anything unreadable is
/// upright, as the `image` crate treats it.
fn exif_orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_walker_rejects_garbage_without_panicking() {
        for case in [
            &[0xFF, 0xD8, 0xFF][..],
            &[0xFF, 0xD8, 0xFF, 0xC0],
            &[0xFF, 0xD8, 0xFF, 0xC0, 0x00],
            &[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x01],
            &[0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF, 0x00],
            &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02],
            &[0xFF, 0xD8, 0xFF, 0xD9],
            &[0xFF, 0xD8, 0x00],
        ] {
            assert!(jpeg_file::read_frame(case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn png_header_must_be_ihdr() {
        let mut b = PNG_MAGIC.to_vec();
        b.extend_from_slice(&[0, 0, 0, 13]);
        b.extend_from_slice(b"IDAT");
        b.extend_from_slice(&[0; 13]);
        assert!(png_file::read_ihdr(&b).is_err());
        assert!(png_file::read_ihdr(PNG_MAGIC).is_err());
    }
}
