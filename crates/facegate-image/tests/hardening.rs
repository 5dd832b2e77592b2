//! Issue 8 items 3 and 4: bounded decode memory, and JPEGs whose headers
//! promise more than their data holds. Every file is generated here.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::*;
use facegate_image::{decode, inspect, Format, ImageError, Limits};
use image::{ImageFormat, RgbImage};
use jpeg_encoder::{ColorType, SamplingFactor};

/// Asserts that `f` refuses with a decode error using little CPU.
fn refused_quickly(what: &str, f: impl FnOnce() -> Result<RgbImage, ImageError>) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let r = f();
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
    assert!(matches!(r, Err(ImageError::Decode(_))), "{what}: {r:?}");
    assert!(cpu <= Duration::from_millis(100), "{what}: {cpu:?} CPU");
    assert!(wall < Duration::from_secs(1), "{what}: {wall:?} wall");
}

fn no_min_side() -> Limits {
    Limits {
        min_side: 1,
        ..Limits::default()
    }
}

// ---------------------------------------------------------------- item 4

#[test]
fn jpeg_frame_header_claiming_more_than_its_data_is_refused() {
    // 640x480 of photo-like data, then the SOF patched to say 6000x6000.
    let data = photo_like(640, 480, 7);
    let spec = JpegSpec {
        quality: 60,
        ..JpegSpec::default()
    };
    let jpeg = jpeg(&data, 640, 480, ColorType::Rgb, spec);
    assert!(decode(&jpeg, &Limits::default()).is_ok());
    assert!(jpeg.len() < 60_000, "{}", jpeg.len());

    let mut lying = jpeg.clone();
    let sof = lying.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    lying[sof + 5..sof + 9].copy_from_slice(&[0x17, 0x70, 0x17, 0x70]); // 6000 x 6000
    refused_quickly("inspect", || {
        inspect(&lying, &Limits::default()).map(|_| RgbImage::new(1, 1))
    });
    refused_quickly("decode", || decode(&lying, &Limits::default()));
    let Err(ImageError::Decode(msg)) = decode(&lying, &Limits::default()) else {
        unreachable!()
    };
    assert!(msg.contains("6000x6000"), "{msg}");
}

#[test]
fn frame_component_that_no_scan_codes_is_refused() {
    // A grey progressive file given a second frame component that no scan
    // codes: the decoder would build that whole plane from nothing.
    let spec = JpegSpec {
        progressive: true,
        ..JpegSpec::default()
    };
    let jpeg = jpeg(&vec![99; 320 * 240], 320, 240, ColorType::Luma, spec);
    assert!(decode(&jpeg, &Limits::default()).is_ok());
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC2]).unwrap();
    assert_eq!(jpeg[sof + 9], 1, "one component");
    let mut broken = jpeg[..sof + 13].to_vec();
    broken[sof + 3] += 3; // segment length
    broken[sof + 9] = 2; // component count
    broken.extend_from_slice(&[0x42, 0x11, 0]);
    broken.extend_from_slice(&jpeg[sof + 13..]);
    let r = decode(&broken, &Limits::default());
    let Err(ImageError::Decode(msg)) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("every component"), "{msg}");
}

/// A progressive JPEG with its last scan repeated until it has `scans`.
fn with_scans(jpeg: &[u8], scans: usize) -> Vec<u8> {
    let sos = sos_offsets(jpeg);
    let last = *sos.last().unwrap();
    let eoi = jpeg.len() - 2;
    assert_eq!(&jpeg[eoi..], &[0xFF, 0xD9]);
    let mut out = jpeg[..eoi].to_vec();
    for _ in sos.len()..scans {
        out.extend_from_slice(&jpeg[last..eoi]);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(sos_offsets(&out).len(), scans);
    out
}

#[test]
fn progressive_jpeg_with_300_scans_is_refused_quickly() {
    let data = photo_like(1024, 768, 11);
    let spec = JpegSpec {
        progressive: true,
        ..JpegSpec::default()
    };
    let jpeg = jpeg(&data, 1024, 768, ColorType::Rgb, spec);
    let normal = sos_offsets(&jpeg).len();
    assert!((4..=20).contains(&normal), "{normal} scans");

    let many = with_scans(&jpeg, 300);
    refused_quickly("300 scans", || decode(&many, &Limits::default()));

    // The cap is 100: exactly 100 still decodes, 101 does not.
    assert!(decode(&with_scans(&jpeg, 100), &Limits::default()).is_ok());
    let r = decode(&with_scans(&jpeg, 101), &Limits::default());
    assert!(matches!(r, Err(ImageError::Decode(_))), "{r:?}");
}

#[test]
fn truncated_scans_are_refused() {
    let data = photo_like(400, 300, 5);
    for progressive in [false, true] {
        let spec = JpegSpec {
            progressive,
            ..JpegSpec::default()
        };
        let jpeg = jpeg(&data, 400, 300, ColorType::Rgb, spec);
        // Cut inside the first scan's data and close the file properly: the
        // end-of-image marker is there, the data is not.
        let first = sos_offsets(&jpeg)[0];
        let cut = first + 40;
        let mut short = jpeg[..cut].to_vec();
        short.extend_from_slice(&[0xFF, 0xD9]);
        let r = decode(&short, &Limits::default());
        assert!(
            matches!(r, Err(ImageError::Decode(_))),
            "{progressive}: {r:?}"
        );
        // Without the marker at all.
        let r = decode(&jpeg[..jpeg.len() - 2], &Limits::default());
        assert!(
            matches!(r, Err(ImageError::Decode(_))),
            "{progressive}: {r:?}"
        );
    }
}

#[test]
fn unsupported_coding_processes_are_decode_errors() {
    let jpeg = jpeg(
        &photo_like(100, 100, 1),
        100,
        100,
        ColorType::Rgb,
        JpegSpec::default(),
    );
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    for marker in [0xC3, 0xC5, 0xC9, 0xCA] {
        let mut other = jpeg.clone();
        other[sof + 1] = marker;
        let r = decode(&other, &Limits::default());
        assert!(matches!(r, Err(ImageError::Decode(_))), "{marker:x}: {r:?}");
    }
}

/// Legitimate files sit right at the bound when they are uniform and use
/// optimised Huffman tables (one bit per block): none may be refused, and
/// every one must decode exactly as the former decoder did.
#[test]
fn legit_jpegs_decode_exactly_as_before() {
    let mut checked = 0;
    let mut both_fail = Vec::new();
    let sizes: [(u16, u16); 5] = [(1, 1), (8, 8), (81, 97), (200, 80), (333, 257)];
    for &(w, h) in &sizes {
        let n = usize::from(w) * usize::from(h);
        let contents: Vec<(&str, Vec<u8>, ColorType)> = vec![
            ("grey128", vec![128; n], ColorType::Luma),
            ("black", vec![0; n * 3], ColorType::Rgb),
            ("uniform", [200u8, 30, 90].repeat(n), ColorType::Rgb),
            ("photo", photo_like(w.into(), h.into(), 9), ColorType::Rgb),
            (
                "cmyk",
                (0..n * 4).map(|i| (i * 37 % 256) as u8).collect(),
                ColorType::Cmyk,
            ),
            ("ycck", vec![90; n * 4], ColorType::CmykAsYcck),
        ];
        for (name, data, color) in &contents {
            for sampling in [
                SamplingFactor::F_1_1,
                SamplingFactor::F_2_2,
                SamplingFactor::F_2_1,
            ] {
                for progressive in [false, true] {
                    // jpeg-encoder's optimised tables panic with restart
                    // intervals (its bug), so those are not combined.
                    for (optimized, restart) in [(false, 0), (false, 1), (false, 5), (true, 0)] {
                        {
                            let spec = JpegSpec {
                                progressive,
                                optimized,
                                restart,
                                sampling,
                                ..JpegSpec::default()
                            };
                            let what = format!("{name} {w}x{h} {spec:?}");
                            let jpeg = jpeg(data, w, h, *color, spec);
                            let info = inspect(&jpeg, &no_min_side())
                                .unwrap_or_else(|e| panic!("{what}: {e}"));
                            assert_eq!(info.format, Format::Jpeg);
                            assert_eq!((info.width, info.height), (w.into(), h.into()));
                            let ours = decode(&jpeg, &no_min_side());
                            let reference = std::panic::catch_unwind(|| reference_decode(&jpeg));
                            match (ours, reference) {
                                (Ok(ours), Ok(reference)) => {
                                    assert!(ours == reference, "{what}")
                                }
                                // zune-jpeg cannot decode some CMYK files
                                // with subsampled components (it errors or
                                // panics): the former path failed the same
                                // way; both must stay a clean error.
                                (Err(ImageError::Decode(m)), Err(_)) => {
                                    both_fail.push(format!("{what}: {m}"))
                                }
                                (ours, _) => panic!("{what}: {ours:?}"),
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, sizes.len() * 6 * 3 * 2 * 4);
    assert!(
        both_fail
            .iter()
            .all(|w| w.starts_with("cmyk") && !w.contains("F_1_1")),
        "{both_fail:#?}"
    );
}

/// The bound is tight, not loose: a uniform progressive image with
/// optimised Huffman tables spends one bit per block in its DC scan, and it
/// still decodes.
#[test]
fn uniform_progressive_jpeg_sits_at_the_bound_and_decodes() {
    let spec = JpegSpec {
        progressive: true,
        optimized: true,
        ..JpegSpec::default()
    };
    let jpeg = jpeg(&vec![128; 1024 * 1024], 1024, 1024, ColorType::Luma, spec);
    let sos = sos_offsets(&jpeg)[0];
    let data_start = sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    let data_end = data_start
        + jpeg[data_start..]
            .windows(2)
            .position(|w| w[0] == 0xFF && w[1] != 0 && !(0xD0..=0xD7).contains(&w[1]))
            .unwrap();
    let (bits, blocks) = ((data_end - data_start) * 8, 128 * 128);
    assert!(
        bits >= blocks && bits <= blocks + 64,
        "{bits} bits for {blocks} blocks"
    );
    let img = decode(&jpeg, &Limits::default()).unwrap();
    assert!(img.pixels().all(|p| p.0 == [128, 128, 128]));
}

#[test]
fn cmyk_and_grey_jpegs_have_the_right_colours() {
    let n = 96 * 96;
    // CMYK as jpeg-encoder writes it (Adobe APP14, inverted): 0 ink = white.
    let white = jpeg(
        &vec![0; n * 4],
        96,
        96,
        ColorType::Cmyk,
        JpegSpec::default(),
    );
    let out = decode(&white, &Limits::default()).unwrap();
    let p = out.get_pixel(40, 40);
    assert!(p.0.iter().all(|&c| c > 245), "{p:?}");
    let cyan: Vec<u8> = [255u8, 0, 0, 0].repeat(n);
    let out = decode(
        &jpeg(&cyan, 96, 96, ColorType::Cmyk, JpegSpec::default()),
        &Limits::default(),
    )
    .unwrap();
    let p = out.get_pixel(40, 40);
    assert!(p[0] < 20 && p[1] > 235 && p[2] > 235, "{p:?}");

    let grey = jpeg(&vec![77; n], 96, 96, ColorType::Luma, JpegSpec::default());
    let out = decode(&grey, &Limits::default()).unwrap();
    let p = out.get_pixel(40, 40);
    assert!(
        p.0.iter().all(|&c| c.abs_diff(77) <= 1) && p[0] == p[1] && p[1] == p[2],
        "{p:?}"
    );
}

#[test]
fn jpeg_exif_orientation_and_decode_bytes() {
    let data = photo_like(160, 96, 4);
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.add_exif_metadata(&exif_orientation(6)).unwrap();
    enc.encode(&data, 160, 96, ColorType::Rgb).unwrap();
    let info = inspect(&out, &Limits::default()).unwrap();
    assert_eq!((info.width, info.height), (96, 160));
    let rgb = 160 * 96 * 3;
    // A rotation needs a second RGB buffer.
    assert!(info.decode_bytes >= 2 * rgb, "{info:?}");
    let img = decode(&out, &Limits::default()).unwrap();
    assert_eq!(img.dimensions(), (96, 160));
    assert!(img == reference_decode(&out));
}

// ---------------------------------------------------------------- item 3

/// Every PNG flavour, interlaced or not, decodes exactly as the former
/// decoder (`image`, which also rounds 16-bit samples) did.
#[test]
fn png_variants_decode_exactly_as_before() {
    let palette: Vec<u8> = (0..256u32)
        .flat_map(|i| [i as u8, (255 - i) as u8, (i * 7 % 256) as u8])
        .collect();
    let trns: Vec<u8> = (0..256u32).map(|i| (i * 3 % 256) as u8).collect();
    let mut checked = 0;
    for (w, h) in [(1, 1), (7, 5), (97, 83), (128, 80)] {
        for interlaced in [false, true] {
            for (color_type, depths) in [
                (0u8, &[1u8, 2, 4, 8, 16][..]),
                (2, &[8, 16]),
                (3, &[1, 2, 4, 8]),
                (4, &[8, 16]),
                (6, &[8, 16]),
            ] {
                for &depth in depths {
                    for with_trns in [false, true] {
                        let mut spec = PngSpec::new(w, h, color_type, depth);
                        spec.interlaced = interlaced;
                        let entries = 1usize << depth.min(8);
                        let grey_trns = 1u16.to_be_bytes();
                        let rgb_trns = [0u8, 1, 0, 2, 0, 3];
                        if color_type == 3 {
                            spec.palette = Some(&palette[..entries * 3]);
                        }
                        if with_trns {
                            spec.trns = match color_type {
                                0 => Some(&grey_trns[..]),
                                2 => Some(&rgb_trns[..]),
                                3 => Some(&trns[..entries]),
                                _ => continue,
                            };
                        }
                        let max = (1u64 << depth) - 1;
                        let channels: u64 = match color_type {
                            0 | 3 => 1,
                            4 => 2,
                            2 => 3,
                            _ => 4,
                        };
                        let png = build_png(&spec, |x, y| {
                            (0..channels)
                                .map(|c| {
                                    let v = u64::from(x * 31 + y * 17) + c * 101;
                                    (v * 2_654_435_761 % (max + 1)) as u16
                                })
                                .collect()
                        });
                        let what = format!("{w}x{h} type {color_type} depth {depth} interlaced {interlaced} trns {with_trns}");
                        let info =
                            inspect(&png, &no_min_side()).unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(info.format, Format::Png);
                        let ours =
                            decode(&png, &no_min_side()).unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert!(ours == reference_decode(&png), "{what}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn png_exif_orientation_is_applied() {
    let exif = exif_orientation(6);
    let mut spec = PngSpec::new(120, 90, 2, 8);
    spec.exif = Some(&exif);
    // Left fifth red, the rest blue.
    let png = build_png(&spec, |x, _| {
        if x < 24 {
            vec![255, 0, 0]
        } else {
            vec![0, 0, 255]
        }
    });
    let info = inspect(&png, &Limits::default()).unwrap();
    assert_eq!((info.width, info.height), (90, 120));
    let img = decode(&png, &Limits::default()).unwrap();
    assert_eq!(img.dimensions(), (90, 120));
    // The red left band of the stored image is the top band once displayed.
    assert_eq!(img.get_pixel(45, 2).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(45, 100).0, [0, 0, 255]);
    assert!(img == reference_decode(&png));
}

#[test]
fn png_with_too_little_data_for_its_size_is_refused_before_decoding() {
    // 6000x6000 RGB declared, a few bytes of IDAT: deflate cannot expand
    // them to 108 MB, so this is refused from the chunk lengths alone.
    let mut ihdr = 6000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&6000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    refused_quickly("short PNG", || decode(&png, &Limits::default()));
}

#[test]
fn apng_first_frame_smaller_than_the_canvas_is_refused() {
    let png = {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 100, 100);
        enc.set_color(png::ColorType::Rgb);
        enc.set_animated(1, 0).unwrap();
        let mut writer = enc.write_header().unwrap();
        writer.set_frame_dimension(50, 50).unwrap();
        writer.write_image_data(&vec![9; 50 * 50 * 3]).unwrap();
        writer.finish().unwrap();
        out
    };
    let r = decode(&png, &Limits::default());
    assert!(matches!(r, Err(ImageError::Decode(_))), "{r:?}");
}

#[test]
fn image_crate_png_and_jpeg_info() {
    let img = RgbImage::from_fn(200, 100, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut png = Cursor::new(Vec::new());
    img.write_to(&mut png, ImageFormat::Png).unwrap();
    let info = inspect(png.get_ref(), &Limits::default()).unwrap();
    assert_eq!(info.format, Format::Png);
    assert_eq!((info.width, info.height), (200, 100));
    let rgb = 200 * 100 * 3;
    assert!(
        info.decode_bytes >= rgb && info.decode_bytes < rgb + (2 << 20),
        "{info:?}"
    );
}

/// The example: 6300x6300 16-bit RGBA (under the 40 MP cap), a few
/// hundred KB compressed, 318 MB as raw samples. It must come out as the
/// right RGB8 pixels with `inspect` reporting about 6300*6300*3 bytes.
#[test]
fn deep_rgba_6300_png_decodes_to_rgb8() {
    let png = deep_png(6300);
    eprintln!("6300x6300 RGBA16 PNG: {} bytes", png.len());
    assert!(png.len() < 3_000_000, "{}", png.len());
    let info = inspect(&png, &Limits::default()).unwrap();
    let rgb = 6300u64 * 6300 * 3;
    assert_eq!((info.width, info.height), (6300, 6300));
    assert!(info.decode_bytes >= rgb, "{info:?}");
    assert!(info.decode_bytes < rgb + rgb / 50, "{info:?}"); // within 2%

    let img = decode(&png, &Limits::default()).unwrap();
    assert_eq!(img.dimensions(), (6300, 6300));
    let mut expected = Vec::new();
    for (y, row) in img.as_raw().chunks_exact(6300 * 3).enumerate() {
        if y % 700 == 0 {
            expected = (0..6300)
                .flat_map(|x| {
                    let p = deep_pixel(x, y as u32);
                    [narrow(p[0]), narrow(p[1]), narrow(p[2])]
                })
                .collect();
        }
        assert!(row == expected.as_slice(), "row {y}");
    }
}

/// Pixel (x, y) of [`deep_png`]: 16-bit RGBA, constant over 700x700 blocks,
/// values chosen so that rounding to 8 bits matters.
fn deep_pixel(x: u32, y: u32) -> [u16; 4] {
    let (bx, by) = (x / 700, y / 700);
    [
        (0x1280 + 0x1111 * bx) as u16,
        (0xF07F - 0x0F0F * by) as u16,
        (0x8080 + 0x0101 * (bx + by)) as u16,
        (0x4000 + 0x1000 * bx) as u16,
    ]
}

/// `round(v * 255 / 65535)`.
fn narrow(v: u16) -> u8 {
    (f64::from(v) * 255.0 / 65535.0).round() as u8
}

fn deep_png(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::High);
    let mut writer = enc.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    use std::io::Write as _;
    for y in 0..side {
        let row: Vec<u8> = (0..side)
            .flat_map(|x| deep_pixel(x, y))
            .flat_map(u16::to_be_bytes)
            .collect();
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    writer.finish().unwrap();
    out
}

/// The header walks run outside the decoders' panic guard: corrupting
/// progressive JPEGs (restart markers, EXIF) and interlaced PNGs (eXIf,
/// palette) anywhere must still give an answer, never a panic.
#[test]
fn corrupted_progressive_and_interlaced_inputs_never_panic() {
    let data = photo_like(120, 90, 2);
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
    enc.set_progressive(true);
    enc.set_restart_interval(3);
    enc.add_exif_metadata(&exif_orientation(6)).unwrap();
    enc.encode(&data, 120, 90, ColorType::Rgb).unwrap();
    let exif = exif_orientation(8);
    let palette: Vec<u8> = (0..48).collect();
    let mut spec = PngSpec::new(97, 83, 3, 4);
    spec.interlaced = true;
    spec.exif = Some(&exif);
    spec.palette = Some(&palette);
    let png = build_png(&spec, |x, y| vec![((x + y) % 16) as u16]);
    let limits = no_min_side();
    let mut rng = Rng(0xDEC0DE);
    for original in [&out, &png] {
        for cut in (0..original.len()).step_by(7) {
            let _ = decode(&original[..cut], &limits);
        }
        for _ in 0..500 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.next() % 6 {
                let i = 3 + (rng.next() as usize) % (bytes.len() - 3);
                bytes[i] = match rng.next() % 3 {
                    0 => 0xFF,
                    1 => 0x00,
                    _ => rng.next() as u8,
                };
            }
            let _ = inspect(&bytes, &limits);
            let _ = decode(&bytes, &limits);
        }
    }
}
