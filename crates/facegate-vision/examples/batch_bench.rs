//! What cross-request batching buys, on the CPU or a GPU.
//!
//! ```sh
//! cargo run --release -p facegate-vision --example batch_bench -- \
//!     --models target/test-models --runtime onnxruntime \
//!     --photos ../shared/datasets/spoof_dev/nuaa/live
//! ```
//!
//! 1. Per network (SFace, MiniFASNet V2 and V1SE, dlib): milliseconds per
//!    face at batch 1, 2, 4, 8 and 16 (`Model::run_batch`), on one-thread
//!    sessions and on sessions using every core (CPU), or on the GPU.
//! 2. The engine as the server drives it: `--callers` concurrent callers,
//!    each analysing photos (detect, embed, liveness; largest face) in its
//!    own lane, with batching off and on (`--max-batch`, `--window-ms`) over
//!    `--sessions` sessions per network: faces/s, p50/p99 per photo, and
//!    the mean batch the networks ran.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use facegate_test_support::stats::{self, LoadSummary};
use facegate_vision::batch::Batching;
use facegate_vision::pipeline::{AnalyzeOptions, Engine, FaceSelection};
use facegate_vision::runtime::{available_cores, Runtime, RuntimeConfig, RuntimeKind};
use facegate_vision::spoof::SpoofCondition;
use facegate_vision::{files, Embedder};
use image::RgbImage;

struct Args {
    models: PathBuf,
    photos: PathBuf,
    runtime: RuntimeKind,
    sessions: usize,
    callers: Vec<usize>,
    count: usize,
    max_batch: usize,
    window_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        models: PathBuf::from("target/test-models"),
        photos: PathBuf::from("../shared/datasets/spoof_dev/nuaa/live"),
        runtime: RuntimeKind::OnnxRuntime,
        sessions: available_cores(),
        callers: vec![1, 2, 8, 32],
        count: 120,
        max_batch: Batching::DEFAULT.max_batch,
        window_ms: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--models" => a.models = PathBuf::from(&value),
            "--photos" => a.photos = PathBuf::from(&value),
            "--runtime" => {
                a.runtime = [RuntimeKind::OnnxRuntime, RuntimeKind::Cuda]
                    .into_iter()
                    .find(|k| k.name() == value)
                    .ok_or(format!("--runtime: onnxruntime or cuda, not {value}"))?
            }
            "--sessions" => a.sessions = num()?.max(1),
            "--count" => a.count = num()?,
            "--max-batch" => a.max_batch = num()?,
            "--window-ms" => a.window_ms = num()? as u64,
            "--callers" => a.callers = stats::counts(&flag, &value)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Per-face milliseconds of each network at growing batch sizes.
fn per_network(runtime: &Runtime, models: &std::path::Path, label: &str) {
    for (file, side) in [
        (files::SFACE_EMBEDDER, 112),
        (files::SPOOF_V2, 80),
        (files::SPOOF_V1SE, 80),
        (files::EMBEDDER, 150),
    ] {
        let Ok(onnx) = std::fs::read(models.join(file)) else {
            println!("{file}: not installed");
            continue;
        };
        let model = match runtime.load(file, &onnx, [1, 3, side, side]) {
            Ok(m) => m,
            Err(e) => {
                println!("{file}: {e}");
                continue;
            }
        };
        let mut row = format!("| {file} | {label} |");
        for n in [1usize, 2, 4, 8, 16] {
            let inputs: Vec<Vec<f32>> = (0..n)
                .map(|k| {
                    (0..3 * side * side)
                        .map(|i| ((i * 7919 + k * 104_729) % 256) as f32)
                        .collect()
                })
                .collect();
            let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            for _ in 0..3 {
                model.run_batch(&refs).expect("warm-up run");
            }
            let reps = (96 / n).max(6);
            let t = Instant::now();
            for _ in 0..reps {
                model.run_batch(&refs).expect("run");
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / (reps * n) as f64;
            row.push_str(&format!(" {ms:.2} |"));
        }
        println!("{row}");
    }
}

/// `callers` threads analysing `images` (each its own lane): faces/s,
/// p50 and p99 ms per photo, and the mean batch size.
fn drive(engine: &Engine, images: &[RgbImage], callers: usize) -> (LoadSummary, f64) {
    let options = AnalyzeOptions {
        embedding: true,
        orientation: false,
        mask: false,
        spoofing: Some(SpoofCondition::Balanced),
    };
    let largest = FaceSelection {
        faces: 1,
        embeddings: 1,
    };
    let before = engine.batch_stats();
    // Every caller gets a few photos however few there are.
    let calls = images.len().max(callers * 4);
    let load = stats::drive(callers, calls, |lane, i| {
        let image = &images[i % images.len()];
        engine
            .serve(lane as u64, || {
                engine.analyze_selected(image, &options, Embedder::Sface, largest)
            })
            .map_or(0, |(f, _)| f.len())
    });
    let after = engine.batch_stats();
    let mean_batch =
        (after.inputs - before.inputs) as f64 / (after.batches - before.batches).max(1) as f64;
    (load, mean_batch)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let defaults = RuntimeConfig::for_model_dir(args.runtime, &args.models);
    let config = |sessions: usize, lone: usize| RuntimeConfig {
        sessions_per_model: sessions,
        lone_run_threads: lone,
        ..defaults.clone()
    };
    // One ONNX Runtime environment per process: every runtime below is a
    // variant of this one.
    let base = Runtime::new(&config(args.sessions, 1))?;
    println!(
        "runtime {}, {} cores, {} sessions per network",
        base.backend().name(),
        available_cores(),
        args.sessions
    );

    println!("\n| network | sessions | ms/face at batch 1 | 2 | 4 | 8 | 16 |");
    println!("|---|---|---|---|---|---|---|");
    per_network(
        &base.with_batching(Batching::DEFAULT),
        &args.models,
        "1 thread",
    );
    if base.backend() == facegate_vision::runtime::Backend::OnnxRuntime && available_cores() > 1 {
        // A lone run (nothing else in flight) takes the all-core session.
        let wide = base
            .with_lone_run_threads(available_cores())
            .with_batching(Batching::DEFAULT);
        per_network(
            &wide,
            &args.models,
            &format!("{} threads", available_cores()),
        );
    }

    let mut paths = facegate_test_support::paths::image_files(&args.photos);
    paths.truncate(args.count);
    let images: Vec<RgbImage> = paths
        .iter()
        .filter_map(|p| image::open(p).ok().map(|i| i.to_rgb8()))
        .collect();
    if images.is_empty() {
        return Err(format!("no readable photos under {}", args.photos.display()).into());
    }
    let batched = Batching {
        max_batch: args.max_batch,
        window: Duration::from_millis(args.window_ms),
    };
    println!(
        "\n{} photos of {}; detect + SFace + liveness, largest face; batching on = \
         up to {} faces, {} ms window",
        images.len(),
        args.photos.display(),
        batched.max_batch,
        args.window_ms
    );
    println!("\n| callers | batching | faces/s | p50 ms | p99 ms | mean batch |");
    println!("|---|---|---|---|---|---|");
    for (label, batching) in [("off", Batching::OFF), ("on", batched)] {
        let engine = Engine::load_with(
            base.with_lone_run_threads(available_cores())
                .with_batching(batching),
            &args.models,
            Default::default(),
            &[Embedder::Sface],
        )?;
        drive(&engine, &images[..images.len().min(8)], 1); // warm-up
        for &callers in &args.callers {
            let (load, mean) = drive(&engine, &images, callers);
            let (fps, p50, p99) = (load.faces_per_s, load.p50_ms, load.p99_ms);
            let mean = if engine.batches() {
                format!("{mean:.2}")
            } else {
                "–".into()
            };
            println!("| {callers} | {label} | {fps:.1} | {p50:.1} | {p99:.1} | {mean} |");
        }
    }
    Ok(())
}
