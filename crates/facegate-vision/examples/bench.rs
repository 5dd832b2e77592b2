//! Per-stage latency and end-to-end throughput of the vision pipeline on
//! both runtimes, measured in one run (numbers in docs/benchmarks.md).
//!
//! `cargo run --release -p facegate-vision --example bench -- MODEL_DIR T1_JPG [ITERATIONS]`
//!
//! The 1-face photo is a 640×480 cut of t1.jpg around its rightmost person;
//! the throughput figure runs the full 6-person t1.jpg on every core.

use std::path::Path;
use std::time::{Duration, Instant};

use facegate_vision::mask::MaskClassifier;
use facegate_vision::pipeline::{AnalyzeOptions, Engine};
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind};
use facegate_vision::spoof::SpoofCondition;
use facegate_vision::Embedder;
use image::RgbImage;

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    facegate_test_support::stats::percentile(&ms, p)
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    f(); // warm-up
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.95),
    )
}

fn one_face_photo(t1: &RgbImage) -> RgbImage {
    let region = image::imageops::crop_imm(t1, 1000, 216, 280, 210).to_image();
    image::imageops::resize(&region, 640, 480, image::imageops::FilterType::CatmullRom)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = Path::new(args.get(1).ok_or("MODEL_DIR")?);
    let t1 = image::open(args.get(2).ok_or("T1_JPG")?)?.to_rgb8();
    let iterations: usize = args.get(3).map_or(Ok(100), |s| s.parse())?;
    let photo = one_face_photo(&t1);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&photo)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("machine: {cores} cores; {iterations} iterations per figure; ms as p50 / p95\n");

    let ort = Runtime::new(&RuntimeConfig::for_model_dir(
        RuntimeKind::OnnxRuntime,
        model_dir,
    ))?;
    for runtime in [ort, Runtime::tract()] {
        let name = runtime.backend().name();
        let engine = Engine::load_with(
            runtime,
            model_dir,
            Default::default(),
            &[Embedder::Sface, Embedder::Dlib],
        )?;
        let faces = engine.detect(&photo)?;
        let face = faces.first().ok_or("no face in the benchmark photo")?;
        assert_eq!(faces.len(), 1, "benchmark photo must hold one face");
        let no_extras = AnalyzeOptions {
            embedding: false,
            orientation: false,
            mask: false,
            spoofing: None,
        };
        let refined = engine.analyze(&photo, &no_extras)?.remove(0).landmarks;
        // What the API's detect/register path runs: detect, dlib landmarks
        // (reported landmarks and roll), embed.
        let embed_only = AnalyzeOptions {
            embedding: true,
            ..no_extras
        };
        let mask = MaskClassifier::embedded()?;
        let limits = facegate_image::Limits::default();
        println!("runtime {name}");
        let rows: Vec<(&str, (f64, f64))> = vec![
            (
                "decode 640x480 JPEG",
                time(iterations, || facegate_image::decode(&jpeg, &limits)),
            ),
            ("detect (YuNet)", time(iterations, || engine.detect(&photo))),
            (
                "landmarks (dlib 5-point)",
                time(iterations, || engine.dlib_landmarks(&photo, face)),
            ),
            (
                "align + embed (SFace)",
                time(iterations, || {
                    engine.embed_sface_points(&photo, &refined, true, false)
                }),
            ),
            (
                "align + embed (SFace, flip)",
                time(iterations, || {
                    engine.embed_sface_points(&photo, &refined, true, true)
                }),
            ),
            (
                "landmarks + align + embed (SFace)",
                time(iterations, || {
                    engine.embed_with(&photo, face, Embedder::Sface)
                }),
            ),
            (
                "landmarks + align + embed (dlib)",
                time(iterations, || {
                    engine.embed_with(&photo, face, Embedder::Dlib)
                }),
            ),
            (
                "liveness (MiniFASNet x2)",
                time(iterations, || {
                    engine.spoof(&photo, &face.bbox, SpoofCondition::Balanced)
                }),
            ),
            ("mask", time(iterations, || mask.predict(&photo, face))),
            (
                "detect + embed (SFace, YuNet's points)",
                time(iterations, || {
                    let d = engine.detect(&photo).unwrap();
                    engine.embed_with(&photo, &d[0], Embedder::Sface)
                }),
            ),
            (
                "analyze, embedding only (SFace)",
                time(iterations, || {
                    engine.analyze_with(&photo, &embed_only, Embedder::Sface)
                }),
            ),
            (
                "analyze, embedding only (dlib)",
                time(iterations, || {
                    engine.analyze_with(&photo, &embed_only, Embedder::Dlib)
                }),
            ),
            (
                "detect + landmarks + embed (dlib)",
                time(iterations, || {
                    let d = engine.detect(&photo).unwrap();
                    engine.embed_with(&photo, &d[0], Embedder::Dlib)
                }),
            ),
        ];
        for (stage, (p50, p95)) in rows {
            println!("  {stage:<36} {p50:>8.2} / {p95:>8.2}");
        }
        // Throughput: every core analyses t1.jpg (6 faces) repeatedly.
        let options = AnalyzeOptions {
            embedding: true,
            ..AnalyzeOptions::default()
        };
        let rounds = (iterations / 10).max(3);
        let start = Instant::now();
        let faces: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..cores)
                .map(|_| {
                    s.spawn(|| {
                        (0..rounds)
                            .map(|_| engine.analyze(&t1, &options).map_or(0, |f| f.len()))
                            .sum::<usize>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  end-to-end t1.jpg (6 faces, detect+landmarks+pose+mask+embed), {cores} threads: {:.1} faces/s\n",
            faces as f64 / secs
        );
    }
    Ok(())
}
