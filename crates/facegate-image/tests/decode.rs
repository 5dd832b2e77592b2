//! Decoding and Base64 tests on images built in memory.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use facegate_image::{decode, decode_base64, ImageError, Limits};
use image::{GrayImage, ImageBuffer, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Left fifth red, the rest blue: big blocks survive JPEG compression.
fn marked(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        if x < w / 5 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

/// A tiny but well-formed PNG whose header declares `w` x `h`.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(common::chunk(b"IHDR", &ihdr));
    png.extend(common::chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(common::chunk(b"IEND", &[]));
    png
}

/// Inserts an APP1 EXIF segment carrying only an orientation tag.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(common::exif_orientation(orientation));
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 180 && p[2] < 80
}

fn is_blue(p: &Rgb<u8>) -> bool {
    p[2] > 180 && p[0] < 80
}

/// Small xorshift so the tests need no RNG crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn png_and_jpeg_decode() {
    let img = marked(120, 90);
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let out = decode(&encode(&img, format), &Limits::default()).unwrap();
        assert_eq!(out.dimensions(), (120, 90), "{format:?}");
        assert!(
            is_red(out.get_pixel(2, 45)) && is_blue(out.get_pixel(100, 45)),
            "{format:?}"
        );
    }
}

#[test]
fn grey_alpha_and_16_bit_become_rgb8() {
    let limits = Limits::default();
    let grey = GrayImage::from_pixel(90, 80, image::Luma([77]));
    let mut buf = Cursor::new(Vec::new());
    grey.write_to(&mut buf, ImageFormat::Png).unwrap();
    let out = decode(buf.get_ref(), &limits).unwrap();
    assert_eq!(out.get_pixel(5, 5), &Rgb([77, 77, 77]));

    let mut buf = Cursor::new(Vec::new());
    grey.write_to(&mut buf, ImageFormat::Jpeg).unwrap();
    let out = decode(buf.get_ref(), &limits).unwrap();
    assert_eq!(out.dimensions(), (90, 80));

    let rgba = RgbaImage::from_pixel(90, 80, Rgba([10, 20, 30, 128]));
    let mut buf = Cursor::new(Vec::new());
    rgba.write_to(&mut buf, ImageFormat::Png).unwrap();
    let out = decode(buf.get_ref(), &limits).unwrap();
    assert_eq!(out.get_pixel(5, 5), &Rgb([10, 20, 30]));

    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(90, 80, Rgb([65535, 0, 32896]));
    let mut buf = Cursor::new(Vec::new());
    deep.write_to(&mut buf, ImageFormat::Png).unwrap();
    let out = decode(buf.get_ref(), &limits).unwrap();
    assert_eq!(out.get_pixel(5, 5), &Rgb([255, 0, 128]));
}

#[test]
fn exif_orientation_6_rotates_clockwise() {
    let jpeg = encode(&marked(120, 90), ImageFormat::Jpeg);
    let rotated = decode(&with_exif_orientation(&jpeg, 6), &Limits::default()).unwrap();
    assert_eq!(rotated.dimensions(), (90, 120));
    // The red left band of the stored image is the top band once displayed.
    assert!(is_red(rotated.get_pixel(45, 2)));
    assert!(is_blue(rotated.get_pixel(45, 100)));

    let upright = decode(&with_exif_orientation(&jpeg, 1), &Limits::default()).unwrap();
    assert_eq!(upright.dimensions(), (120, 90));
    let flipped = decode(&with_exif_orientation(&jpeg, 3), &Limits::default()).unwrap();
    assert_eq!(flipped.dimensions(), (120, 90));
    assert!(is_red(flipped.get_pixel(118, 45)));
}

#[test]
fn orientation_is_applied_before_the_min_side_check() {
    // 200x80 rotated is 80x200: still fine; the shorter side is what counts.
    let jpeg = encode(&marked(200, 80), ImageFormat::Jpeg);
    let out = decode(&with_exif_orientation(&jpeg, 8), &Limits::default()).unwrap();
    assert_eq!(out.dimensions(), (80, 200));
}

#[test]
fn too_small() {
    for (w, h) in [(79, 79), (79, 200), (200, 79)] {
        let png = encode(&marked(w, h), ImageFormat::Png);
        assert!(
            matches!(
                decode(&png, &Limits::default()),
                Err(ImageError::TooSmall { width, height, min_side: 80 }) if (width, height) == (w, h)
            ),
            "{w}x{h}"
        );
    }
    let png = encode(&marked(80, 80), ImageFormat::Png);
    assert!(decode(&png, &Limits::default()).is_ok());
    let limits = Limits {
        min_side: 10,
        ..Limits::default()
    };
    assert!(decode(&encode(&marked(20, 20), ImageFormat::Png), &limits).is_ok());
}

#[test]
fn huge_declared_png_refused_before_allocation() {
    let png = png_declaring(30_000, 30_000);
    assert!(png.len() < 100);
    let start = Instant::now();
    let r = decode(&png, &Limits::default());
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            r,
            Err(ImageError::TooManyPixels {
                width: 30_000,
                height: 30_000,
                max_pixels: 40_000_000
            })
        ),
        "{r:?}"
    );
}

#[test]
fn huge_declared_jpeg_refused_before_allocation() {
    let mut jpeg = encode(&marked(120, 90), ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]); // 65000 x 65000
    let start = Instant::now();
    let r = decode(&jpeg, &Limits::default());
    assert!(start.elapsed() < Duration::from_millis(100));
    assert!(
        matches!(
            r,
            Err(ImageError::TooManyPixels {
                width: 65000,
                height: 65000,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn max_pixels_is_configurable() {
    let png = encode(&marked(100, 100), ImageFormat::Png);
    let limits = Limits {
        max_pixels: 9_999,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&png, &limits),
        Err(ImageError::TooManyPixels { .. })
    ));
    let limits = Limits {
        max_pixels: 10_000,
        ..Limits::default()
    };
    assert!(decode(&png, &limits).is_ok());
}

#[test]
fn zero_size_png_is_a_decode_error() {
    let r = decode(&png_declaring(0, 0), &Limits::default());
    assert!(matches!(r, Err(ImageError::Decode(_))), "{r:?}");
}

#[test]
fn truncated_images_are_decode_errors() {
    let jpeg = encode(&marked(120, 90), ImageFormat::Jpeg);
    let png = encode(&marked(120, 90), ImageFormat::Png);
    for cut in [jpeg.len() / 2, jpeg.len() - 2, 20] {
        let r = decode(&jpeg[..cut], &Limits::default());
        assert!(
            matches!(r, Err(ImageError::Decode(_))),
            "jpeg cut at {cut}: {r:?}"
        );
    }
    for cut in [png.len() / 2, png.len() - 12, 30, 12] {
        let r = decode(&png[..cut], &Limits::default());
        assert!(
            matches!(r, Err(ImageError::Decode(_))),
            "png cut at {cut}: {r:?}"
        );
    }
}

#[test]
fn trailing_data_after_jpeg_end_is_accepted() {
    // Phones append data (e.g. motion photos) after EOI; that is not truncation.
    let mut jpeg = encode(&marked(120, 90), ImageFormat::Jpeg);
    jpeg.extend_from_slice(b"trailing junk \x00\xFF\x12");
    assert!(decode(&jpeg, &Limits::default()).is_ok());
}

#[test]
fn other_formats_and_noise_are_invalid_format() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    noise[0] = 0x42;
    let cases: Vec<Vec<u8>> = vec![
        noise,
        b"GIF89a\x64\x00\x64\x00\x80\x00\x00".to_vec(),
        b"BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00".to_vec(),
        b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec(),
        b"II*\x00\x08\x00\x00\x00".to_vec(),
        b"\x89PNG".to_vec(),
        vec![0xFF, 0xD8],
        Vec::new(),
    ];
    for case in cases {
        let r = decode(&case, &Limits::default());
        assert!(
            matches!(r, Err(ImageError::InvalidFormat)),
            "{:?}: {r:?}",
            &case[..case.len().min(8)]
        );
    }
}

#[test]
fn too_many_bytes() {
    let png = encode(&marked(120, 90), ImageFormat::Png);
    let limits = Limits {
        max_bytes: png.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&png, &limits),
        Err(ImageError::TooLarge { .. })
    ));
}

#[test]
fn corrupted_inputs_never_panic() {
    let jpeg = encode(&marked(120, 90), ImageFormat::Jpeg);
    let png = encode(&marked(120, 90), ImageFormat::Png);
    let mut rng = Rng(12345);
    for original in [&jpeg, &png] {
        for cut in (0..original.len()).step_by(13) {
            let _ = decode(&original[..cut], &Limits::default());
        }
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.next() % 8 {
                let i = 3 + (rng.next() as usize) % (bytes.len() - 3);
                bytes[i] = rng.next() as u8;
            }
            let _ = decode(&bytes, &Limits::default());
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn base64_variants_decode_to_the_same_image() {
    let png = encode(&marked(120, 90), ImageFormat::Png);
    let padded = b64(&png);
    let unpadded = padded.trim_end_matches('=').to_owned();
    let wrapped: String = padded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    for s in [
        padded.clone(),
        unpadded.clone(),
        wrapped.clone(),
        format!("data:image/png;base64,{unpadded}"),
        format!("data:image/jpeg;base64,{wrapped}\n"),
        format!("  \n{padded}\n  "),
    ] {
        let bytes = decode_base64(&s, 3_000_000).unwrap();
        assert_eq!(bytes, png);
        assert_eq!(
            decode(&bytes, &Limits::default()).unwrap().dimensions(),
            (120, 90)
        );
    }
}

#[test]
fn oversize_base64_refused_without_decoding() {
    // Invalid characters everywhere: a decoder would report those, so
    // TooLarge proves the refusal came from the length alone.
    let junk = "!".repeat(4_000_004);
    assert!(matches!(
        decode_base64(&junk, 3_000_000),
        Err(ImageError::TooLarge {
            max_bytes: 3_000_000
        })
    ));
    let huge = "A".repeat(64_000_000);
    let start = Instant::now();
    assert!(matches!(
        decode_base64(&huge, 3_000_000),
        Err(ImageError::TooLarge { .. })
    ));
    assert!(start.elapsed() < Duration::from_millis(50));
    // Exactly at the limit is fine; one byte more is not.
    let at = b64(&vec![0u8; 3_000]);
    assert_eq!(decode_base64(&at, 3_000).unwrap().len(), 3_000);
    let over = b64(&vec![0u8; 3_001]);
    assert!(matches!(
        decode_base64(&over, 3_000),
        Err(ImageError::TooLarge { .. })
    ));
}
