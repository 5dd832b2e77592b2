//! JPEG: marker walk for [`inspect`](super::inspect) and decoding with
//! zune-jpeg straight into an RGB8 buffer.
//!
//! # Why the scan checks cannot refuse a valid file
//!
//! zune-jpeg (like libjpeg) does not fail when entropy-coded data runs out:
//! it fills the rest of the frame with grey. A 16 KB file whose frame header
//! claims 6000×6000 therefore costs a full 36-megapixel decode. The walk
//! here refuses such files from their structure alone, using a bound every
//! conforming encoder must meet:
//!
//! * In every scan that codes DC coefficients (every sequential scan, and
//!   every progressive scan with Ss = 0), each 8×8 block of each component
//!   in the scan costs at least one bit: a first DC scan codes a Huffman
//!   symbol per block (Huffman codes are 1–16 bits; there is no run-length
//!   for DC), a DC refinement scan appends exactly one raw bit per block,
//!   and a sequential scan codes at least a DC symbol and an AC symbol. So a
//!   scan over `n` blocks has at least `n / 8` entropy-coded bytes. Counting
//!   blocks without the MCU padding of interleaved scans only lowers `n`;
//!   counting restart markers and stuffed zero bytes as data only raises the
//!   byte count; both keep the bound on the safe side. (Arithmetic coding,
//!   which could do better than a bit per block, is refused: zune-jpeg does
//!   not decode it anyway.)
//! * Every frame component must be coded by at least one such scan: a
//!   conforming encoder codes the DC coefficients of every component, and a
//!   component without any would be decoded entirely from nothing.
//! * At most [`MAX_SCANS`] scans. Encoders emit about 10 (libjpeg's
//!   progressive script: 10 for colour, 6 for grey); each extra scan costs
//!   the decoder a pass over every block of its component even when the scan
//!   is a few bytes of end-of-band runs. zune-jpeg has the same cap but
//!   counts while decoding, i.e. after doing the work.
//!
//! An end-of-image marker must follow the scans (truncation), and only the
//! first frame header is accepted.

use image::metadata::Orientation;
use image::RgbImage;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::{alloc_pixels, be16, decode_err, exif_orientation};
use crate::ImageError;

/// Most scans (SOS markers) accepted in one file.
pub(super) const MAX_SCANS: u32 = 100;

#[derive(Debug, Clone, Copy)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
}

/// The frame header (SOF) and what precedes the first scan.
#[derive(Debug)]
pub(super) struct Frame {
    width: u16,
    height: u16,
    progressive: bool,
    components: Vec<Component>,
    /// From the last APP1 Exif segment before the first scan (the one
    /// zune-jpeg keeps).
    orientation: Orientation,
    /// Offset of the first SOS marker.
    first_scan: usize,
}

impl Frame {
    pub(super) fn width(&self) -> u32 {
        u32::from(self.width)
    }

    pub(super) fn height(&self) -> u32 {
        u32::from(self.height)
    }

    fn h_max(&self) -> u64 {
        self.components
            .iter()
            .map(|c| u64::from(c.h))
            .max()
            .unwrap_or(1)
    }

    fn v_max(&self) -> u64 {
        self.components
            .iter()
            .map(|c| u64::from(c.v))
            .max()
            .unwrap_or(1)
    }

    /// 8×8 blocks of component `i` covering the image, without MCU padding
    /// (the count a non-interleaved scan codes; interleaved scans code at
    /// least as many).
    fn blocks(&self, i: usize) -> u64 {
        let c = self.components[i];
        let w = (u64::from(self.width) * u64::from(c.h)).div_ceil(self.h_max());
        let h = (u64::from(self.height) * u64::from(c.v)).div_ceil(self.v_max());
        w.div_ceil(8) * h.div_ceil(8)
    }
}

/// The whole file as [`read_scans`] validated it.
#[derive(Debug)]
pub(super) struct Header {
    pub frame: Frame,
    pub orientation: Orientation,
    /// Whether the first scan carries every component (a sequential file
    /// that does not is decoded via a whole-image coefficient buffer).
    all_in_first_scan: bool,
}

fn is_sof(marker: u8) -> bool {
    // C4 (DHT), C8 (JPG extension) and CC (DAC) share the range.
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Reads the marker whose first 0xFF is at `*pos`, skipping fill bytes;
/// returns where its last 0xFF is and the marker byte, and moves `*pos`
/// past it.
fn read_marker(
    bytes: &[u8],
    pos: &mut usize,
    truncated: &dyn Fn() -> ImageError,
) -> Result<(usize, u8), ImageError> {
    while bytes.get(*pos) == Some(&0xFF) {
        *pos += 1;
    }
    let marker_at = pos.saturating_sub(1);
    let marker = *bytes.get(*pos).ok_or_else(truncated)?;
    *pos += 1;
    Ok((marker_at, marker))
}

/// The length-prefixed segment at `*pos` (without its length), moving
/// `*pos` past it.
fn read_segment<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    truncated: &dyn Fn() -> ImageError,
) -> Result<&'a [u8], ImageError> {
    let len = usize::from(be16(bytes, *pos).ok_or_else(truncated)?);
    if len < 2 || *pos + len > bytes.len() {
        return Err(truncated());
    }
    let segment = &bytes[*pos + 2..*pos + len];
    *pos += len;
    Ok(segment)
}

/// Walks the marker segments up to the first scan: frame header, EXIF
/// orientation, position of the first SOS.
pub(super) fn read_frame(bytes: &[u8]) -> Result<Frame, ImageError> {
    let truncated = || decode_err("truncated JPEG header");
    let mut pos = 2;
    let mut frame: Option<Frame> = None;
    let mut exif = None;
    loop {
        if *bytes.get(pos).ok_or_else(truncated)? != 0xFF {
            return Err(decode_err("JPEG marker expected"));
        }
        let (marker_at, marker) = read_marker(bytes, &mut pos, &truncated)?;
        match marker {
            0x01 | 0xD0..=0xD8 => continue, // stand-alone markers carry no length
            0xD9 => return Err(decode_err("JPEG ends before any scan")),
            _ => {}
        }
        let segment = read_segment(bytes, &mut pos, &truncated)?;
        match marker {
            0xDA => {
                let mut frame =
                    frame.ok_or_else(|| decode_err("JPEG has no frame header before its scan"))?;
                frame.first_scan = marker_at;
                frame.orientation = exif_orientation(exif);
                return Ok(frame);
            }
            m if is_sof(m) => {
                if frame.is_some() {
                    return Err(decode_err("JPEG has more than one frame header"));
                }
                frame = Some(parse_sof(m, segment)?);
            }
            0xE1 if segment.len() > 6 && segment.starts_with(b"Exif\0\0") => {
                exif = Some(&segment[6..]);
            }
            _ => {}
        }
    }
}

fn parse_sof(marker: u8, seg: &[u8]) -> Result<Frame, ImageError> {
    let progressive = match marker {
        0xC0 | 0xC1 => false,
        0xC2 => true,
        _ => {
            return Err(decode_err(format!(
                "unsupported JPEG coding process (SOF{})",
                marker - 0xC0
            )))
        }
    };
    let bad = || decode_err("malformed JPEG frame header");
    let height = be16(seg, 1).ok_or_else(bad)?;
    let width = be16(seg, 3).ok_or_else(bad)?;
    let count = usize::from(*seg.get(5).ok_or_else(bad)?);
    if !(1..=4).contains(&count) || seg.len() != 6 + 3 * count {
        return Err(bad());
    }
    let components = seg[6..]
        .chunks_exact(3)
        .map(|c| Component {
            id: c[0],
            h: c[1] >> 4,
            v: c[1] & 0x0F,
        })
        .collect::<Vec<_>>();
    if components
        .iter()
        .any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v))
    {
        return Err(bad());
    }
    Ok(Frame {
        width,
        height,
        progressive,
        components,
        orientation: Orientation::NoTransforms,
        first_scan: 0,
    })
}

/// Walks every scan after the frame header to the end-of-image marker and
/// applies the checks described in the module documentation.
pub(super) fn read_scans(bytes: &[u8], frame: Frame) -> Result<Header, ImageError> {
    let truncated = || decode_err("JPEG is truncated (no end-of-image marker)");
    let mut pos = frame.first_scan;
    let mut scans = 0u32;
    let mut coded = [false; 4];
    let mut first_scan_components = 0;
    loop {
        // Between segments, tolerate stray bytes before the next marker, as
        // libjpeg and zune-jpeg do.
        pos += bytes
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
            .ok_or_else(truncated)?;
        let (_, marker) = read_marker(bytes, &mut pos, &truncated)?;
        match marker {
            0xD9 => break,
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let segment = read_segment(bytes, &mut pos, &truncated)?;
        if is_sof(marker) {
            return Err(decode_err("JPEG has more than one frame header"));
        }
        if marker != 0xDA {
            continue;
        }
        scans += 1;
        if scans > MAX_SCANS {
            return Err(decode_err(format!("JPEG has more than {MAX_SCANS} scans")));
        }
        let (members, spectral_start) = parse_sos(segment, &frame)?;
        if scans == 1 {
            first_scan_components = members.len();
        }
        let end = entropy_end(bytes, pos).ok_or_else(truncated)?;
        let data_bytes = (end - pos) as u64;
        pos = end;
        // Sequential scans always code DC, whatever Ss says (decoders ignore
        // it there), so a lying Ss cannot dodge the bound.
        if spectral_start == 0 || !frame.progressive {
            let blocks: u64 = members.iter().map(|&i| frame.blocks(i)).sum();
            if data_bytes.saturating_mul(8) < blocks {
                return Err(decode_err(format!(
                    "JPEG scan has {data_bytes} bytes of data for {blocks} blocks: \
                     the data ends long before the {}x{} frame is filled",
                    frame.width, frame.height
                )));
            }
            for &i in &members {
                coded[i] = true;
            }
        }
    }
    if !coded[..frame.components.len()].iter().all(|&c| c) {
        return Err(decode_err(
            "JPEG ends before every component of the frame was coded",
        ));
    }
    Ok(Header {
        orientation: frame.orientation,
        all_in_first_scan: first_scan_components == frame.components.len(),
        frame,
    })
}

/// The frame-component indices a scan header lists, and its Ss.
fn parse_sos(seg: &[u8], frame: &Frame) -> Result<(Vec<usize>, u8), ImageError> {
    let bad = || decode_err("malformed JPEG scan header");
    let count = usize::from(*seg.first().ok_or_else(bad)?);
    if !(1..=4).contains(&count) || seg.len() != 4 + 2 * count {
        return Err(bad());
    }
    let mut members = Vec::with_capacity(count);
    for selector in seg[1..1 + 2 * count].chunks_exact(2) {
        let i = frame
            .components
            .iter()
            .position(|c| c.id == selector[0])
            .ok_or_else(|| decode_err("JPEG scan names a component the frame lacks"))?;
        if members.contains(&i) {
            return Err(bad());
        }
        members.push(i);
    }
    Ok((members, seg[1 + 2 * count]))
}

/// Where the entropy-coded data starting at `start` ends: the next marker
/// other than a restart marker (0xFF 0x00 is an escaped data byte). `None`
/// when the file ends first.
fn entropy_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => i += 2,
            _ => return Some(i),
        }
    }
}

/// Upper bound of what zune-jpeg allocates besides the RGB8 output.
///
/// Progressive files (and sequential ones whose first scan lacks a
/// component) keep every coefficient until the last scan: 64 `i16` per
/// block, blocks counted per MCU as zune-jpeg does (whole-image blocks for
/// frames without subsampling, where zune-jpeg does not interleave). Row
/// buffers (coefficients, upsampling) take a few hundred bytes per column;
/// metadata (EXIF, ICC, XMP) is copied out of the input, so at most its
/// size. Progressive grey files are decoded to one byte per pixel and
/// widened afterwards (see [`decode`]), so their peak is the larger of the
/// grey plane plus coefficients and the grey plane plus the grown buffer.
pub(super) fn decoder_extra(h: &Header, input_len: usize) -> u64 {
    let f = &h.frame;
    let (w, ht) = (u64::from(f.width), u64::from(f.height));
    let (h_max, v_max) = (f.h_max(), f.v_max());
    let subsampled = h_max > 1 || v_max > 1;
    let (mcu_x, mcu_y) = (w.div_ceil(8 * h_max), ht.div_ceil(8 * v_max));
    let mut coefficients = 0;
    let mut rows = 0;
    for c in &f.components {
        let (ch, cv) = (u64::from(c.h), u64::from(c.v));
        let blocks = if subsampled && f.components.len() > 1 {
            mcu_x * mcu_y * ch * cv
        } else {
            // Not interleaved: zune-jpeg still multiplies by the factors.
            w.div_ceil(8) * ht.div_ceil(8) * ch * cv
        };
        coefficients += blocks * 64 * 2;
        let stride = (mcu_x * ch * 8).max(w.div_ceil(8) * 8);
        rows += stride * cv * 256;
    }
    if !f.progressive && h.all_in_first_scan {
        coefficients = 0;
    }
    let working = coefficients + rows + input_len as u64;
    let pixels = w * ht;
    if grey_via_luma(h) {
        // Grey plane + working set while decoding; then old and new buffer
        // while growing (in case `realloc` has to copy). Relative to RGB8.
        (pixels + working).max(4 * pixels) - 3 * pixels
    } else {
        working
    }
}

/// Whether the file is decoded to one byte per pixel and widened in place:
/// for a progressive grey file, whose coefficients (two bytes per pixel) are
/// alive while the decoder writes its output, this keeps the peak at four
/// bytes per pixel instead of five.
fn grey_via_luma(h: &Header) -> bool {
    h.frame.components.len() == 1 && h.frame.progressive
}

/// Decodes into an upright RGB8 image; any colour space zune-jpeg reads
/// (grey, YCbCr, RGB, CMYK, YCCK) is converted by it row by row.
pub(super) fn decode(bytes: &[u8], h: &Header) -> Result<RgbImage, ImageError> {
    let via_luma = grey_via_luma(h);
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_max_scans(MAX_SCANS as usize)
        .jpeg_set_out_colorspace(if via_luma {
            ColorSpace::Luma
        } else {
            ColorSpace::RGB
        });
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(decode_err)?;
    let (width, height) = (h.frame.width(), h.frame.height());
    if decoder.dimensions() != Some((width as usize, height as usize)) {
        return Err(decode_err("JPEG decoder disagrees with the frame header"));
    }
    let pixels = u64::from(width) * u64::from(height);
    let channels = if via_luma { 1 } else { 3 };
    if decoder.output_buffer_size().map(|n| n as u64) != Some(pixels * channels) {
        return Err(decode_err("JPEG decoder output has an unexpected size"));
    }
    let mut out = alloc_pixels(pixels * channels)?;
    decoder.decode_into(&mut out).map_err(decode_err)?;
    drop(decoder);
    if via_luma {
        widen_grey(&mut out)?;
    }
    RgbImage::from_raw(width, height, out).ok_or_else(|| decode_err("JPEG buffer size mismatch"))
}

/// Turns a grey plane into RGB8 in the same buffer: grown to three times
/// its length, then filled from the end, so every grey byte is read before
/// the RGB triples that overwrite it reach its position.
fn widen_grey(buf: &mut Vec<u8>) -> Result<(), ImageError> {
    let n = buf.len();
    buf.try_reserve_exact(2 * n)
        .map_err(|_| decode_err(format!("could not allocate {} bytes for pixels", 3 * n)))?;
    buf.resize(3 * n, 0);
    for i in (0..n).rev() {
        let v = buf[i];
        buf[3 * i..3 * i + 3].fill(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widen_grey_in_place() {
        let mut buf = vec![1, 2, 3, 250];
        widen_grey(&mut buf).unwrap();
        assert_eq!(buf, [1, 1, 1, 2, 2, 2, 3, 3, 3, 250, 250, 250]);
        let mut empty = Vec::new();
        widen_grey(&mut empty).unwrap();
        assert!(empty.is_empty());
    }
}
