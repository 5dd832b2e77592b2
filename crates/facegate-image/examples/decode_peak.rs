//! Peak resident memory of decoding one image, for docs/benchmarks.md.
//!
//! ```sh
//! # the issue's files: deep.png (6300x6300 16-bit RGBA, a few hundred KB),
//! # lying.jpg (640x480 of data, frame header says 6000x6000),
//! # scans300.jpg (a progressive JPEG with 300 scans); and grey6000.jpg /
//! # eob100.jpg (the same progressive JPEG without and with cheap scans up
//! # to the 100-scan cap)
//! cargo run --release -p facegate-image --example decode_peak -- --write-samples /tmp
//! cargo run --release -p facegate-image --example decode_peak -- /tmp/deep.png
//! ```
//!
//! The file is read first; then the kernel's high-water mark is reset
//! (`/proc/self/clear_refs`), so "VmHWM after" is the peak reached while
//! decoding, and "growth" that peak minus the resident size just before.
//! "CPU" is the process's user+system time spent in `decode`.

use std::io::Write as _;
use std::time::Instant;

use facegate_image::{decode, inspect, Limits};

/// A `kB` field of /proc/self/status, in bytes.
fn status(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kb: u64 = line
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Writes the issue's PNG: 16-bit RGBA, constant 700x700 blocks, so it
/// compresses to a few hundred KB.
fn write_deep_png(path: &str, side: u32) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, side, side);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::High);
    let mut writer = enc.write_header()?;
    let mut stream = writer.stream_writer()?;
    for y in 0..side {
        let row: Vec<u8> = (0..side)
            .flat_map(|x| {
                let (bx, by) = (x / 700, y / 700);
                [
                    (0x1280 + 0x1111 * bx) as u16,
                    (0xF07F - 0x0F0F * by) as u16,
                    (0x8080 + 0x0101 * (bx + by)) as u16,
                    (0x4000 + 0x1000 * bx) as u16,
                ]
            })
            .flat_map(u16::to_be_bytes)
            .collect();
        stream.write_all(&row)?;
    }
    stream.finish()?;
    writer.finish()?;
    Ok(())
}

/// 640x480 of photo-like data in a baseline JPEG whose frame header is
/// patched to say 6000x6000.
fn lying_jpeg() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        let n = (x * 7919 + y * 104_729) % 9;
        image::Rgb([
            (x / 3 + n) as u8,
            (y / 2 + n) as u8,
            ((x + y) % 256 / 2 + n) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)?;
    let mut jpeg = out.into_inner();
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .ok_or("no SOF0")?;
    jpeg[sof + 5..sof + 9].copy_from_slice(&6000u16.to_be_bytes().repeat(2));
    Ok(jpeg)
}

/// A 2000x2000 progressive JPEG whose last scan is repeated to 300 scans.
fn many_scans_jpeg() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let (w, h) = (2000u16, 2000u16);
    let data: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .flat_map(|i| {
            let (x, y) = (i % 2000, i / 2000);
            [(x / 8) as u8, (y / 8) as u8, ((x + y) / 16) as u8]
        })
        .collect();
    let mut jpeg = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, 85);
    enc.set_progressive(true);
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Rgb)?;
    let last = jpeg
        .windows(2)
        .rposition(|w| w == [0xFF, 0xDA])
        .ok_or("no SOS")?;
    let eoi = jpeg.len() - 2;
    let scans = jpeg.windows(2).filter(|w| *w == [0xFF, 0xDA]).count();
    let mut out = jpeg[..eoi].to_vec();
    for _ in scans..300 {
        out.extend_from_slice(&jpeg[last..eoi]);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// A 6000x6000 grey progressive JPEG, and the same with end-of-band-run
/// scans (a few dozen bytes each, one pass over every block for the
/// decoder) appended up to 100 scans: the most the scan cap lets through.
fn eob_run_jpegs() -> Result<(Vec<u8>, Vec<u8>), Box<dyn std::error::Error>> {
    let side = 6000usize;
    let data: Vec<u8> = (0..side * side)
        .map(|i| ((i % side / 32 + i / side / 32) % 251) as u8)
        .collect();
    let mut jpeg = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, 85);
    enc.set_progressive(true);
    enc.encode(
        &data,
        side as u16,
        side as u16,
        jpeg_encoder::ColorType::Luma,
    )?;
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC2])
        .ok_or("no SOF2")?;
    let component = jpeg[sof + 10];
    let scans = jpeg.windows(2).filter(|w| *w == [0xFF, 0xDA]).count();
    let eoi = jpeg.len() - 2;
    let mut out = jpeg[..eoi].to_vec();
    // AC table 3 with a single 1-bit code, for EOB14 (runs of up to 32767
    // blocks).
    out.extend_from_slice(&[0xFF, 0xC4, 0, 20, 0x13, 1]);
    out.extend_from_slice(&[0; 15]);
    out.push(0xE0);
    let runs = (side.div_ceil(8) * side.div_ceil(8)).div_ceil(32767);
    for _ in scans..100 {
        out.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, component, 0x03, 1, 63, 0]);
        // Each run: code "0" and 14 one-bits (run 32767); pad with ones.
        let mut bits: Vec<bool> = Vec::new();
        for _ in 0..runs {
            bits.push(false);
            bits.extend([true; 14]);
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(true);
        }
        for byte in bits.chunks(8) {
            let b = byte.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit));
            out.push(b);
            if b == 0xFF {
                out.push(0); // byte stuffing
            }
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok((jpeg, out))
}

/// User + system CPU time of this process, from /proc/self/stat (ticks of
/// 10 ms).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f
        .get(11..13)
        .map(|t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks * 10
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--write-samples" => {
            let dir = std::path::Path::new(dir);
            write_deep_png(&dir.join("deep.png").to_string_lossy(), 6300)?;
            std::fs::write(dir.join("lying.jpg"), lying_jpeg()?)?;
            std::fs::write(dir.join("scans300.jpg"), many_scans_jpeg()?)?;
            let (grey, padded) = eob_run_jpegs()?;
            std::fs::write(dir.join("grey6000.jpg"), grey)?;
            std::fs::write(dir.join("eob100.jpg"), padded)?;
            for name in [
                "deep.png",
                "lying.jpg",
                "scans300.jpg",
                "grey6000.jpg",
                "eob100.jpg",
            ] {
                let path = dir.join(name);
                println!(
                    "wrote {}: {} bytes",
                    path.display(),
                    std::fs::metadata(&path)?.len()
                );
            }
            return Ok(());
        }
        [_] => {}
        _ => {
            eprintln!("usage: decode_peak FILE | decode_peak --write-samples DIR");
            std::process::exit(2);
        }
    }
    let path = &args[0];
    let bytes = std::fs::read(path)?;
    let limits = Limits::default();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status("VmRSS").unwrap_or(0);
    println!("file            {path} ({} bytes)", bytes.len());
    match inspect(&bytes, &limits) {
        Ok(info) => println!(
            "decode_bytes    {} ({})",
            info.decode_bytes,
            mib(info.decode_bytes)
        ),
        Err(e) => println!("inspect         refused: {e}"),
    }
    let (start, cpu) = (Instant::now(), cpu_ms());
    let result = decode(&bytes, &limits);
    let (took, cpu) = (start.elapsed(), cpu_ms() - cpu);
    let hwm = status("VmHWM").unwrap_or(0);
    match &result {
        Ok(img) => println!("decoded         {}x{} RGB8", img.width(), img.height()),
        Err(e) => println!("decode          refused: {e}"),
    }
    println!("VmRSS before    {}", mib(rss_before));
    println!(
        "VmHWM after     {}{}",
        mib(hwm),
        if reset {
            ""
        } else {
            " (peak not reset: includes start-up)"
        }
    );
    println!("growth          {}", mib(hwm.saturating_sub(rss_before)));
    println!(
        "decode time     {:.1} ms wall, {cpu} ms CPU",
        took.as_secs_f64() * 1e3
    );
    Ok(())
}
