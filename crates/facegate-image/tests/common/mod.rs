//! Helpers shared by the integration tests: hand-built PNGs (any colour
//! type, bit depth and interlacing), JPEGs from jpeg-encoder, and the former
//! decode path (the `image` crate) as a reference.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &d in data {
        a = (a + u32::from(d)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A zlib stream of stored (uncompressed) deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// What to put in a hand-built PNG.
pub struct PngSpec<'a> {
    pub width: u32,
    pub height: u32,
    /// 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    pub color_type: u8,
    pub bit_depth: u8,
    pub interlaced: bool,
    pub palette: Option<&'a [u8]>,
    pub trns: Option<&'a [u8]>,
    pub exif: Option<&'a [u8]>,
}

impl PngSpec<'_> {
    pub fn new(width: u32, height: u32, color_type: u8, bit_depth: u8) -> Self {
        PngSpec {
            width,
            height,
            color_type,
            bit_depth,
            interlaced: false,
            palette: None,
            trns: None,
            exif: None,
        }
    }

    fn channels(&self) -> usize {
        match self.color_type {
            0 | 3 => 1,
            4 => 2,
            2 => 3,
            _ => 4,
        }
    }
}

/// Packs one row of samples (each already within the bit depth).
fn pack_row(samples: &[u16], depth: u8) -> Vec<u8> {
    match depth {
        16 => samples.iter().flat_map(|s| s.to_be_bytes()).collect(),
        8 => samples.iter().map(|&s| s as u8).collect(),
        d => {
            let per_byte = 8 / d as usize;
            samples
                .chunks(per_byte)
                .map(|group| {
                    group.iter().enumerate().fold(0u8, |acc, (i, &s)| {
                        acc | ((s as u8) << (8 - d as usize * (i + 1)))
                    })
                })
                .collect()
        }
    }
}

/// Builds a PNG whose pixel (x, y) has the samples `pixel(x, y)` (one value
/// per channel, within the bit depth), with filter type 0 and stored
/// deflate blocks, Adam7-interlaced if asked.
pub fn build_png(spec: &PngSpec, pixel: impl Fn(u32, u32) -> Vec<u16>) -> Vec<u8> {
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let channels = spec.channels();
    let mut raw = Vec::new();
    let mut emit = |xs: &[u32], y: u32| {
        let samples: Vec<u16> = xs
            .iter()
            .flat_map(|&x| {
                let p = pixel(x, y);
                assert_eq!(p.len(), channels);
                p
            })
            .collect();
        raw.push(0);
        raw.extend(pack_row(&samples, spec.bit_depth));
    };
    if spec.interlaced {
        for (x0, y0, dx, dy) in PASSES {
            let xs: Vec<u32> = (x0..spec.width).step_by(dx as usize).collect();
            if xs.is_empty() {
                continue;
            }
            for y in (y0..spec.height).step_by(dy as usize) {
                emit(&xs, y);
            }
        }
    } else {
        let xs: Vec<u32> = (0..spec.width).collect();
        for y in 0..spec.height {
            emit(&xs, y);
        }
    }
    let mut ihdr = spec.width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&spec.height.to_be_bytes());
    ihdr.extend_from_slice(&[
        spec.bit_depth,
        spec.color_type,
        0,
        0,
        u8::from(spec.interlaced),
    ]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    if let Some(exif) = spec.exif {
        png.extend(chunk(b"eXIf", exif));
    }
    if let Some(palette) = spec.palette {
        png.extend(chunk(b"PLTE", palette));
    }
    if let Some(trns) = spec.trns {
        png.extend(chunk(b"tRNS", trns));
    }
    // Several IDAT chunks, as real encoders write them.
    for part in zlib_stored(&raw).chunks(8192) {
        png.extend(chunk(b"IDAT", part));
    }
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A big-endian TIFF block holding only an orientation tag, as carried by
/// a PNG eXIf chunk (JPEG APP1 prefixes it with "Exif\0\0").
pub fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

/// The decode path facegate used before it drove the codecs itself: the
/// `image` crate's decoders, orientation applied, converted to RGB8.
pub fn reference_decode(bytes: &[u8]) -> RgbImage {
    let (mut img, orientation) = if bytes.starts_with(b"\x89PNG") {
        let mut d = image::codecs::png::PngDecoder::new(Cursor::new(bytes)).unwrap();
        let o = d.orientation().unwrap_or(Orientation::NoTransforms);
        (DynamicImage::from_decoder(d).unwrap(), o)
    } else {
        let mut d = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes)).unwrap();
        let o = d.orientation().unwrap_or(Orientation::NoTransforms);
        (DynamicImage::from_decoder(d).unwrap(), o)
    };
    img.apply_orientation(orientation);
    img.into_rgb8()
}

/// JPEG encoding options for [`jpeg`].
#[derive(Debug, Clone, Copy)]
pub struct JpegSpec {
    pub quality: u8,
    pub progressive: bool,
    pub optimized: bool,
    pub restart: u16,
    pub sampling: jpeg_encoder::SamplingFactor,
}

impl Default for JpegSpec {
    fn default() -> Self {
        JpegSpec {
            quality: 85,
            progressive: false,
            optimized: false,
            restart: 0,
            sampling: jpeg_encoder::SamplingFactor::F_2_2,
        }
    }
}

/// Encodes `data` (laid out as `color` says) with jpeg-encoder.
pub fn jpeg(
    data: &[u8],
    width: u16,
    height: u16,
    color: jpeg_encoder::ColorType,
    spec: JpegSpec,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, spec.quality);
    enc.set_progressive(spec.progressive);
    enc.set_optimized_huffman_tables(spec.optimized);
    if spec.restart > 0 {
        enc.set_restart_interval(spec.restart);
    }
    enc.set_sampling_factor(spec.sampling);
    enc.encode(data, width, height, color).unwrap();
    out
}

/// Small xorshift so the tests need no RNG crate.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Photo-like 8-bit RGB content: smooth gradients plus some noise, so JPEG
/// scans carry a realistic amount of data.
pub fn photo_like(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let noise = (rng.next() % 8) as u32;
            data.push(((x * 255 / width.max(1)) + noise).min(255) as u8);
            data.push(((y * 255 / height.max(1)) + noise).min(255) as u8);
            data.push((((x + y) * 97 % 256) / 2 + noise) as u8);
        }
    }
    data
}

/// The offsets of the SOS markers of a JPEG produced by an encoder (0xFF
/// 0xDA never occurs inside entropy-coded data).
pub fn sos_offsets(jpeg: &[u8]) -> Vec<usize> {
    jpeg.windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect()
}

/// Thread CPU time, so timing assertions are not fooled by a busy machine.
pub fn thread_cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // utime and stime are fields 14 and 15, counted after the ")" that ends
    // the command name; units are clock ticks (100 per second on Linux).
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    std::time::Duration::from_millis(ticks * 10)
}
