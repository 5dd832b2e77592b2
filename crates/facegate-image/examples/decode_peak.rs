//! Peak resident memory of decoding one image, for docs/benchmarks.md.
//!
//! ```sh
//! # the issue's PNG: 6300x6300 16-bit RGBA, a few hundred KB
//! cargo run --release -p facegate-image --example decode_peak -- --write-deep-png /tmp/deep.png
//! cargo run --release -p facegate-image --example decode_peak -- /tmp/deep.png
//! ```
//!
//! The file is read first; then the kernel's high-water mark is reset
//! (`/proc/self/clear_refs`), so "VmHWM after" is the peak reached while
//! decoding, and "growth" that peak minus the resident size just before.

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, out] if flag == "--write-deep-png" => {
            write_deep_png(out, 6300)?;
            println!("wrote {out}: {} bytes", std::fs::metadata(out)?.len());
            return Ok(());
        }
        [_] => {}
        _ => {
            eprintln!("usage: decode_peak FILE | decode_peak --write-deep-png OUT");
            std::process::exit(2);
        }
    }
    let path = &args[0];
    let bytes = std::fs::read(path)?;
    let limits = Limits::default();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status("VmRSS").unwrap_or(0);
    let info = inspect(&bytes, &limits)?;
    let start = Instant::now();
    let img = decode(&bytes, &limits)?;
    let took = start.elapsed();
    let hwm = status("VmHWM").unwrap_or(0);
    println!("file            {path} ({} bytes)", bytes.len());
    println!("decoded         {}x{} RGB8", img.width(), img.height());
    println!(
        "decode_bytes    {} ({})",
        info.decode_bytes,
        mib(info.decode_bytes)
    );
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
    println!("decode time     {:.0} ms", took.as_secs_f64() * 1e3);
    Ok(())
}
