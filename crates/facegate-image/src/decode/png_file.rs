//! PNG: chunk walk for [`inspect`](super::inspect) and a row-by-row decode
//! straight into RGB8.

use std::io::Cursor;

use ::png::{BitDepth, ColorType, InterlaceInfo, Transformations};
use image::metadata::Orientation;
use image::RgbImage;

use super::{alloc_pixels, be32, decode_err, exif_orientation, PNG_MAGIC};
use crate::ImageError;

/// Deflate's largest possible expansion: a length/distance pair copies at
/// most 258 bytes and costs at least 2 bits (1-bit codes for both), so one
/// compressed byte yields at most 8 / 2 * 258 = 1032 bytes.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The IHDR fields decoding depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ihdr {
    pub width: u32,
    pub height: u32,
    bit_depth: u8,
    color_type: u8,
}

impl Ihdr {
    fn channels(&self) -> u64 {
        match self.color_type {
            0 | 3 => 1,
            4 => 2,
            2 => 3,
            _ => 4,
        }
    }

    /// Bytes of one unfiltered row as stored (before any transformation).
    fn raw_row_bytes(&self) -> u64 {
        (u64::from(self.width) * self.channels() * u64::from(self.bit_depth)).div_ceil(8)
    }
}

/// What the chunk walk found.
#[derive(Debug)]
pub(super) struct Header {
    pub ihdr: Ihdr,
    /// From an eXIf chunk before the image data, as the `png` crate (and
    /// hence `image`) reads it.
    pub orientation: Orientation,
}

/// IHDR, which the PNG spec requires to be the first chunk.
pub(super) fn read_ihdr(bytes: &[u8]) -> Result<Ihdr, ImageError> {
    if bytes.get(8..16) != Some(&b"\0\0\0\x0dIHDR"[..]) {
        return Err(decode_err("PNG does not start with an IHDR chunk"));
    }
    let data = bytes
        .get(16..29)
        .ok_or_else(|| decode_err("truncated PNG header"))?;
    let width = be32(data, 0).unwrap_or(0);
    let height = be32(data, 4).unwrap_or(0);
    let (bit_depth, color_type, compression, filter, interlace) =
        (data[8], data[9], data[10], data[11], data[12]);
    let valid_depth = match color_type {
        0 => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(bit_depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(bit_depth, 8 | 16),
        _ => false,
    };
    if !valid_depth || compression != 0 || filter != 0 || interlace > 1 {
        return Err(decode_err("PNG header has invalid parameters"));
    }
    Ok(Ihdr {
        width,
        height,
        bit_depth,
        color_type,
    })
}

/// Walks every chunk to IEND (lengths only; CRCs are left to the decoder),
/// takes the orientation from an eXIf chunk before the first IDAT and checks
/// that the IDAT chunks hold enough data for the declared size.
pub(super) fn read_chunks(bytes: &[u8], ihdr: Ihdr) -> Result<Header, ImageError> {
    let truncated = || decode_err("PNG is truncated");
    let mut pos = PNG_MAGIC.len();
    let mut idat_bytes = 0u64;
    let mut exif = None;
    loop {
        let len = be32(bytes, pos).ok_or_else(truncated)?;
        if len > 0x7FFF_FFFF {
            return Err(decode_err("PNG chunk length out of range"));
        }
        let data_start = pos + 8;
        let data_end = data_start + len as usize;
        let kind = bytes.get(pos + 4..data_start).ok_or_else(truncated)?;
        if data_end + 4 > bytes.len() {
            return Err(truncated());
        }
        match kind {
            b"IDAT" => idat_bytes += u64::from(len),
            b"eXIf" if idat_bytes == 0 && exif.is_none() => {
                exif = Some(&bytes[data_start..data_end]);
            }
            b"IEND" => break,
            _ => {}
        }
        pos = data_end + 4;
    }
    // The stored pixels alone (without the per-row filter bytes) are a lower
    // bound of what the zlib stream must inflate to, interlaced or not.
    let pixel_bytes = (u64::from(ihdr.width)
        * u64::from(ihdr.height)
        * ihdr.channels()
        * u64::from(ihdr.bit_depth))
        / 8;
    if idat_bytes.saturating_mul(DEFLATE_MAX_RATIO) < pixel_bytes {
        return Err(decode_err(format!(
            "PNG image data ({idat_bytes} bytes) is too short for {}x{} pixels",
            ihdr.width, ihdr.height
        )));
    }
    Ok(Header {
        ihdr,
        orientation: exif_orientation(exif),
    })
}

/// Upper bound of what the `png` reader and this module allocate besides the
/// RGB8 result. The reader keeps a sliding window of inflated rows: it
/// shifts back once max(4 rows, 128 KiB) are consumed, plus the 32 KiB
/// deflate look-back and growth steps, and `Vec` doubling can double that;
/// then the previous row, the reader's output row (at most 8 bytes per
/// pixel) and our RGB8 row for interlaced images.
pub(super) fn decoder_extra(h: &Header) -> u64 {
    let row = h.ihdr.raw_row_bytes() + 1;
    let window = (4 * row).max(128 << 10) + row + (64 << 10);
    let width = u64::from(h.ihdr.width);
    2 * window + 2 * row + 8 * width + 3 * width
}

/// Decodes the first frame into an upright RGB8 image, converting each row
/// as it comes out of the inflater.
pub(super) fn decode(bytes: &[u8], h: &Header) -> Result<RgbImage, ImageError> {
    let (width, height) = (h.ihdr.width, h.ihdr.height);
    let mut decoder = ::png::Decoder::new(Cursor::new(bytes));
    // EXPAND: palette to RGB(A), low-bit grey to 8 bits, tRNS to alpha.
    // Sixteen-bit samples are kept so that they can be rounded exactly as
    // before; only one row of them ever exists.
    decoder.set_transformations(Transformations::EXPAND);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let mut reader = decoder.read_info().map_err(decode_err)?;
    let info = reader.info();
    if (info.width, info.height) != (width, height) {
        return Err(decode_err("PNG header changed between reads"));
    }
    // An APNG whose default image is its first frame must give that frame
    // the full canvas; anything else would leave rows unwritten.
    if let Some(fc) = &info.frame_control {
        if (fc.width, fc.height, fc.x_offset, fc.y_offset) != (width, height, 0, 0) {
            return Err(decode_err("APNG first frame does not cover the image"));
        }
    }
    let interlaced = info.interlaced;
    let (color, depth) = reader.output_color_type();
    let layout = Layout::new(color, depth)?;

    let stride = width as usize * 3;
    let mut out = alloc_pixels(u64::from(width) * u64::from(height) * 3)?;
    if interlaced {
        let mut rgb_row = vec![0u8; stride];
        while let Some(row) = reader.next_interlaced_row().map_err(decode_err)? {
            let InterlaceInfo::Adam7(pass) = *row.interlace() else {
                return Err(decode_err("PNG interlacing changed between reads"));
            };
            let pixels = row.data().len() / layout.bytes_per_pixel();
            let dst = rgb_row
                .get_mut(..pixels * 3)
                .ok_or_else(|| decode_err("PNG row longer than the image"))?;
            layout.to_rgb(row.data(), dst)?;
            ::png::expand_interlaced_row(&mut out, stride, dst, &pass, 24);
        }
    } else {
        let mut rows = out.chunks_exact_mut(stride);
        while let Some(row) = reader.next_row().map_err(decode_err)? {
            let dst = rows
                .next()
                .ok_or_else(|| decode_err("PNG has more rows than its header"))?;
            layout.to_rgb(row.data(), dst)?;
        }
        if rows.next().is_some() {
            return Err(decode_err("PNG has fewer rows than its header"));
        }
    }
    // Reads the chunks after the image data up to IEND, verifying them.
    reader.finish().map_err(decode_err)?;
    drop(reader);
    RgbImage::from_raw(width, height, out).ok_or_else(|| decode_err("PNG buffer size mismatch"))
}

/// Sample layout of the rows the reader hands out after `EXPAND`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    channels: usize,
    sixteen: bool,
}

impl Layout {
    fn new(color: ColorType, depth: BitDepth) -> Result<Layout, ImageError> {
        let channels = match color {
            ColorType::Grayscale => 1,
            ColorType::GrayscaleAlpha => 2,
            ColorType::Rgb => 3,
            ColorType::Rgba => 4,
            ColorType::Indexed => return Err(decode_err("PNG palette was not expanded")),
        };
        let sixteen = match depth {
            BitDepth::Eight => false,
            BitDepth::Sixteen => true,
            _ => return Err(decode_err("PNG samples were not expanded to 8 bits")),
        };
        Ok(Layout { channels, sixteen })
    }

    fn bytes_per_pixel(self) -> usize {
        self.channels * if self.sixteen { 2 } else { 1 }
    }

    /// Converts one row to RGB8: grey is replicated, alpha dropped and
    /// 16-bit samples rounded to 8 bits.
    fn to_rgb(self, src: &[u8], dst: &mut [u8]) -> Result<(), ImageError> {
        let bpp = self.bytes_per_pixel();
        if src.len() != dst.len() / 3 * bpp || !dst.len().is_multiple_of(3) {
            return Err(decode_err("PNG row has an unexpected length"));
        }
        let px = src.chunks_exact(bpp).zip(dst.chunks_exact_mut(3));
        match (self.channels, self.sixteen) {
            (1 | 2, false) => px.for_each(|(s, d)| d.fill(s[0])),
            (3, false) => dst.copy_from_slice(src),
            (_, false) => px.for_each(|(s, d)| d.copy_from_slice(&s[..3])),
            (1 | 2, true) => px.for_each(|(s, d)| d.fill(narrow(s[0], s[1]))),
            (_, true) => px.for_each(|(s, d)| {
                d[0] = narrow(s[0], s[1]);
                d[1] = narrow(s[2], s[3]);
                d[2] = narrow(s[4], s[5]);
            }),
        }
        Ok(())
    }
}

/// A big-endian 16-bit sample to 8 bits, `round(v * 255 / 65535)`: the
/// same rounding `image` applies, so results match the former decoder.
fn narrow(hi: u8, lo: u8) -> u8 {
    let v = u32::from(u16::from_be_bytes([hi, lo]));
    ((v + 128) / 257) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_rounds_like_image() {
        for v in [
            0u16, 1, 127, 128, 129, 256, 32896, 65280, 65407, 65408, 65535,
        ] {
            let expected = (f64::from(v) * 255.0 / 65535.0).round() as u8;
            assert_eq!(narrow((v >> 8) as u8, v as u8), expected, "{v}");
        }
    }

    #[test]
    fn deflate_bound() {
        // 1000x1000 RGB8 needs at least 3_000_000 / 1032 = 2907 IDAT bytes.
        let mut png = PNG_MAGIC.to_vec();
        let chunk = |png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0; 4]);
        };
        let mut ihdr = 1000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&1000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        let mut short = png.clone();
        chunk(&mut short, b"IDAT", &[0; 2906]);
        chunk(&mut short, b"IEND", &[]);
        let mut enough = png.clone();
        chunk(&mut enough, b"IDAT", &[0; 2000]);
        chunk(&mut enough, b"IDAT", &[0; 907]);
        chunk(&mut enough, b"IEND", &[]);
        let ihdr = read_ihdr(&short).unwrap();
        assert!(matches!(
            read_chunks(&short, ihdr),
            Err(ImageError::Decode(_))
        ));
        assert!(read_chunks(&enough, ihdr).is_ok());
        // No IEND: truncated.
        assert!(read_chunks(&enough[..enough.len() - 12], ihdr).is_err());
    }
}
