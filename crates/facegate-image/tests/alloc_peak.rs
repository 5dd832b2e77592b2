//! `ImageInfo::decode_bytes` is an honest upper bound: a counting allocator
//! measures the heap `decode` really holds at its peak (per thread, so the
//! tests can run in parallel) and compares it with what `inspect` promised.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use facegate_image::{decode, inspect, Limits};
use jpeg_encoder::{ColorType, SamplingFactor};

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap held by this thread while `f` runs, above what it held before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as u64)
}

/// Decodes `bytes` and checks rgb <= measured peak <= decode_bytes.
fn check(what: &str, bytes: &[u8], limits: &Limits) -> (u64, u64) {
    let info = inspect(bytes, limits).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (img, peak) = peak_of(|| decode(bytes, limits));
    let img = img.unwrap_or_else(|e| panic!("{what}: {e}"));
    let rgb = u64::from(img.width()) * u64::from(img.height()) * 3;
    assert!(peak >= rgb, "{what}: peak {peak} < rgb {rgb}");
    assert!(
        peak <= info.decode_bytes,
        "{what}: peak {peak} > promised {}",
        info.decode_bytes
    );
    (peak, info.decode_bytes)
}

#[test]
fn png_peak_stays_within_decode_bytes() {
    // The hand-built PNGs are stored uncompressed.
    let limits = Limits {
        max_bytes: 64 << 20,
        ..Limits::default()
    };
    for (color_type, depth) in [
        (0u8, 1u8),
        (0, 16),
        (2, 8),
        (2, 16),
        (3, 4),
        (4, 16),
        (6, 8),
        (6, 16),
    ] {
        for interlaced in [false, true] {
            for exif in [None, Some(exif_orientation(6)), Some(exif_orientation(3))] {
                let mut spec = PngSpec::new(1200, 700, color_type, depth);
                spec.interlaced = interlaced;
                let palette: Vec<u8> = (0..48).collect();
                if color_type == 3 {
                    spec.palette = Some(&palette);
                }
                spec.exif = exif.as_deref();
                let channels = [1, 0, 3, 1, 2, 0, 4][usize::from(color_type)];
                let max = (1u32 << depth) - 1;
                let png = build_png(&spec, |x, y| {
                    (0..channels)
                        .map(|c| ((x + 3 * y + c) % (max + 1)) as u16)
                        .collect()
                });
                let what = format!(
                    "type {color_type}/{depth} interlaced {interlaced} exif {}",
                    exif.is_some()
                );
                let (peak, promised) = check(&what, &png, &limits);
                eprintln!("{what}: peak {peak}, promised {promised}");
            }
        }
    }
}

#[test]
fn jpeg_peak_stays_within_decode_bytes() {
    let limits = Limits::default();
    let (w, h) = (1500u16, 1000u16);
    let photo = photo_like(w.into(), h.into(), 21);
    let n = usize::from(w) * usize::from(h);
    let grey = vec![100u8; n];
    let cmyk: Vec<u8> = photo
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 40])
        .collect();
    for (name, data, color) in [
        ("rgb", &photo, ColorType::Rgb),
        ("grey", &grey, ColorType::Luma),
        ("cmyk", &cmyk, ColorType::Cmyk),
    ] {
        for sampling in [SamplingFactor::F_1_1, SamplingFactor::F_2_2] {
            if name == "cmyk" && sampling != SamplingFactor::F_1_1 {
                continue; // zune-jpeg cannot decode these (see hardening.rs)
            }
            for progressive in [false, true] {
                let spec = JpegSpec {
                    progressive,
                    sampling,
                    ..JpegSpec::default()
                };
                let jpeg = jpeg(data, w, h, color, spec);
                let what = format!("{name} {sampling:?} progressive {progressive}");
                let (peak, promised) = check(&what, &jpeg, &limits);
                eprintln!("{what}: peak {peak}, promised {promised}");
                let pixels = u64::from(w) * u64::from(h);
                if progressive && name != "grey" {
                    // The coefficients are real memory: the estimate must
                    // count them, not just the output.
                    assert!(peak > pixels * 4, "{what}: {peak}");
                }
                if progressive && name == "grey" {
                    // Decoded to one byte per pixel beside the coefficients,
                    // widened afterwards: at most 4 bytes per pixel.
                    assert!(
                        peak <= pixels * 4 && promised <= pixels * 4 + (4 << 20),
                        "{what}"
                    );
                }
            }
        }
    }
    // Rotated: the second RGB buffer.
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
    enc.add_exif_metadata(&exif_orientation(8)).unwrap();
    enc.encode(&photo, w, h, ColorType::Rgb).unwrap();
    let (peak, _) = check("rotated", &out, &limits);
    assert!(peak >= 2 * u64::from(w) * u64::from(h) * 3);
}

/// The PNG: 6300x6300 16-bit RGBA decodes holding little more than
/// its RGB8 result (no 318 MB RGBA16 buffer, no second copy).
#[test]
fn deep_png_peak_is_about_the_rgb8_result() {
    let side = 6300u32;
    let png = {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Sixteen);
        enc.set_compression(png::Compression::High);
        let mut writer = enc.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        use std::io::Write as _;
        let row: Vec<u8> = (0..side)
            .flat_map(|x| [(x * 10) as u16, 0x8080, 0xFFFF, 0x1234])
            .flat_map(u16::to_be_bytes)
            .collect();
        for _ in 0..side {
            stream.write_all(&row).unwrap();
        }
        stream.finish().unwrap();
        writer.finish().unwrap();
        out
    };
    let (peak, promised) = check("6300 RGBA16", &png, &Limits::default());
    let rgb = u64::from(side) * u64::from(side) * 3;
    eprintln!("6300 RGBA16: rgb {rgb}, peak {peak}, promised {promised}");
    assert!(peak < rgb + (4 << 20), "{peak}");
    assert!(promised < rgb + rgb / 50, "{promised}");
}
