//! Bounded PNG/JPEG decoding to RGB8.

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];

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
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Width and height from the IHDR chunk, which the PNG spec requires first.
fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    if bytes.get(8..16) != Some(&b"\0\0\0\x0dIHDR"[..]) {
        return Err(decode_err("PNG does not start with an IHDR chunk"));
    }
    let w = be32(bytes, 16).ok_or_else(|| decode_err("truncated PNG header"))?;
    let h = be32(bytes, 20).ok_or_else(|| decode_err("truncated PNG header"))?;
    Ok((w, h))
}

/// Walks the JPEG marker segments up to the first scan and returns the frame
/// dimensions. Also requires an EOI marker after the scan: the decoder fills
/// missing data with grey instead of failing, so truncation is caught here.
fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let truncated = || decode_err("truncated JPEG header");
    let mut pos = 2;
    let mut dims = None;
    let scan_start = loop {
        if *bytes.get(pos).ok_or_else(truncated)? != 0xFF {
            return Err(decode_err("JPEG marker expected"));
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        let marker = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue, // stand-alone markers carry no length
            0xD9 => return Err(decode_err("JPEG ends before any scan")),
            _ => {}
        }
        let len = usize::from(be16(bytes, pos).ok_or_else(truncated)?);
        if len < 2 || pos + len > bytes.len() {
            return Err(truncated());
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof && dims.is_none() {
            let h = be16(bytes, pos + 3).ok_or_else(truncated)?;
            let w = be16(bytes, pos + 5).ok_or_else(truncated)?;
            dims = Some((u32::from(w), u32::from(h)));
        }
        pos += len;
        if marker == 0xDA {
            break pos;
        }
    };
    let dims = dims.ok_or_else(|| decode_err("JPEG has no frame header before its scan"))?;
    // Entropy-coded data escapes 0xFF, so FF D9 there can only be the real EOI.
    if !bytes[scan_start..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(decode_err("JPEG is truncated (no end-of-image marker)"));
    }
    Ok(dims)
}

/// Decodes a PNG or JPEG into RGB8 within `limits`.
///
/// The format is chosen by magic bytes only. The header is read and the
/// declared size checked against `limits.max_pixels` before any pixel buffer
/// is allocated. The EXIF orientation is applied, so the returned width and
/// height are those of the image as it should be displayed. Greyscale,
/// alpha (dropped, not composited) and 16-bit images are converted to RGB8.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbImage, ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let format = sniff(bytes).ok_or(ImageError::InvalidFormat)?;
    let (width, height) = match format {
        Format::Png => png_dimensions(bytes)?,
        Format::Jpeg => jpeg_dimensions(bytes)?,
    };
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
        return Err(too_small(width, height, limits));
    }

    // A decoder bug on hostile input must fail this request, not the worker.
    std::panic::catch_unwind(|| decode_pixels(bytes, format, limits))
        .unwrap_or_else(|_| Err(decode_err("decoder failed on malformed input")))
}

fn decode_pixels(bytes: &[u8], format: Format, limits: &Limits) -> Result<RgbImage, ImageError> {
    // Second guard in case the codec disagrees with the header walk above:
    // the largest buffer is RGBA16, 8 bytes per pixel.
    let mut codec_limits = image::Limits::default();
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 24));
    let (mut img, orientation) = match format {
        Format::Png => {
            let mut d =
                PngDecoder::with_limits(Cursor::new(bytes), codec_limits).map_err(decode_err)?;
            check_declared(d.dimensions(), limits)?;
            let o = d.orientation().unwrap_or(Orientation::NoTransforms);
            (DynamicImage::from_decoder(d).map_err(decode_err)?, o)
        }
        Format::Jpeg => {
            let mut d = JpegDecoder::new(Cursor::new(bytes)).map_err(decode_err)?;
            d.set_limits(codec_limits).map_err(decode_err)?;
            check_declared(d.dimensions(), limits)?;
            let o = d.orientation().unwrap_or(Orientation::NoTransforms);
            (DynamicImage::from_decoder(d).map_err(decode_err)?, o)
        }
    };
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    if rgb.width() < limits.min_side || rgb.height() < limits.min_side {
        return Err(too_small(rgb.width(), rgb.height(), limits));
    }
    Ok(rgb)
}

fn too_small(width: u32, height: u32, limits: &Limits) -> ImageError {
    ImageError::TooSmall {
        width,
        height,
        min_side: limits.min_side,
    }
}

fn check_declared((w, h): (u32, u32), limits: &Limits) -> Result<(), ImageError> {
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width: w,
            height: h,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
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
            assert!(jpeg_dimensions(case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn png_header_must_be_ihdr() {
        let mut b = PNG_MAGIC.to_vec();
        b.extend_from_slice(&[0, 0, 0, 13]);
        b.extend_from_slice(b"IDAT");
        b.extend_from_slice(&[0; 13]);
        assert!(png_dimensions(&b).is_err());
        assert!(png_dimensions(PNG_MAGIC).is_err());
    }
}
