//! Checks `runtime = "cuda"` against the CPU in one process and measures
//! detect + embed throughput on the GPU (run by scripts/gpu-check.sh).
//!
//! ```sh
//! facegate models install --gpu --dir target/test-models
//! cargo run --release -p facegate-vision --example gpu_check -- \
//!     --models target/test-models --photos ../shared/datasets/lfw_dev/images
//! ```
//!
//! Both runtimes use the GPU build of ONNX Runtime (one library per
//! process): its CPU provider is the reference. For each of `--parity`
//! photos it compares the faces found and their SFace embeddings (largest
//! absolute difference, smallest cosine; fails above `--tolerance`, 1e-3).
//! Then it runs detect + embed over `--count` photos at each `--threads`
//! count (concurrent callers, one photo each; the engine runs faces at
//! batch 1) and prints faces/s and p50/p99 per photo. Exit status 1 when
//! the embeddings disagree or no face is found.

use std::path::PathBuf;
use std::time::Instant;

use facegate_test_support::stats::{self, LoadSummary};
use facegate_vision::pipeline::{AnalyzeOptions, Engine};
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind, ORT_LIBRARY_NAME};
use facegate_vision::{files, Embedder};
use image::RgbImage;

struct Args {
    models: PathBuf,
    photos: PathBuf,
    parity: usize,
    count: usize,
    threads: Vec<usize>,
    tolerance: f32,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        models: PathBuf::from("target/test-models"),
        photos: PathBuf::from("../shared/datasets/lfw_dev/images"),
        parity: 100,
        count: 1000,
        threads: vec![1, 4, 16, 32],
        tolerance: 1e-3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--models" => a.models = PathBuf::from(&value),
            "--photos" => a.photos = PathBuf::from(&value),
            "--parity" => a.parity = num()?,
            "--count" => a.count = num()?,
            "--threads" => a.threads = stats::counts(&flag, &value)?,
            "--tolerance" => a.tolerance = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

const EMBED_ONLY: AnalyzeOptions = AnalyzeOptions {
    embedding: true,
    orientation: false,
    mask: false,
    spoofing: None,
};

/// Detect + embed over `images` from `threads` callers.
fn throughput(engine: &Engine, images: &[RgbImage], threads: usize) -> LoadSummary {
    stats::drive(threads, images.len(), |_, i| {
        engine
            .analyze(&images[i], &EMBED_ONLY)
            .map_or(0, |f| f.len())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let lib = args
        .models
        .join(files::ONNXRUNTIME_GPU_DIR)
        .join(ORT_LIBRARY_NAME);
    if !lib.is_file() {
        return Err(format!(
            "{} missing: run `facegate models install --gpu`",
            lib.display()
        )
        .into());
    }
    // Each CUDA session holds its own workspace: a few per model suffice.
    let sessions = args.threads.iter().copied().max().unwrap_or(1).min(8);
    let config = |kind, sessions| RuntimeConfig {
        kind,
        ort_library: Some(lib.clone()),
        sessions_per_model: sessions,
        lone_run_threads: 1,
    };
    let load = |runtime: Runtime| {
        Engine::load_with(
            runtime,
            &args.models,
            Default::default(),
            &[Embedder::Sface],
        )
    };
    let t0 = Instant::now();
    let gpu = load(Runtime::new(&config(RuntimeKind::Cuda, sessions))?)?;
    println!("GPU engine loaded in {:.1} s", t0.elapsed().as_secs_f64());
    let cpu = load(Runtime::new(&config(RuntimeKind::OnnxRuntime, 1))?)?;

    let mut paths = facegate_test_support::paths::image_files(&args.photos);
    paths.truncate(args.count.max(args.parity));
    let images: Vec<RgbImage> = paths
        .iter()
        .filter_map(|p| image::open(p).ok().map(|i| i.to_rgb8()))
        .collect();
    if images.is_empty() {
        return Err(format!("no readable photos under {}", args.photos.display()).into());
    }

    // Parity with the CPU provider.
    let (mut worst, mut lowest_cosine, mut compared, mut count_mismatch) = (0f32, 1f32, 0, 0);
    for image in images.iter().take(args.parity) {
        let on_gpu = gpu.analyze(image, &EMBED_ONLY)?;
        let on_cpu = cpu.analyze(image, &EMBED_ONLY)?;
        if on_gpu.len() != on_cpu.len() {
            count_mismatch += 1;
            continue;
        }
        for (g, c) in on_gpu.iter().zip(&on_cpu) {
            let (Some(g), Some(c)) = (&g.embedding, &c.embedding) else {
                continue;
            };
            let diff = g
                .iter()
                .zip(c)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let cosine: f32 = g.iter().zip(c).map(|(a, b)| a * b).sum();
            worst = worst.max(diff);
            lowest_cosine = lowest_cosine.min(cosine);
            compared += 1;
        }
    }
    println!(
        "parity over {} photos: {compared} faces compared, largest |GPU - CPU| {worst:.2e}, \
         lowest cosine {lowest_cosine:.6}, photos with a different face count: {count_mismatch}",
        args.parity.min(images.len())
    );

    println!("\n| callers | faces/s | p50 ms | p99 ms |");
    println!("| --- | --- | --- | --- |");
    let _ = throughput(&gpu, &images[..images.len().min(20)], 1); // warm-up
    for &threads in &args.threads {
        let load = throughput(&gpu, &images, threads);
        let (rate, p50, p99) = (load.faces_per_s, load.p50_ms, load.p99_ms);
        println!("| {threads} | {rate:.1} | {p50:.2} | {p99:.2} |");
    }
    if compared == 0 || worst > args.tolerance || count_mismatch > 0 {
        eprintln!("FAILED: GPU and CPU disagree beyond {:.0e}", args.tolerance);
        std::process::exit(1);
    }
    println!(
        "\nOK: GPU embeddings match the CPU's within {:.0e}",
        args.tolerance
    );
    Ok(())
}
