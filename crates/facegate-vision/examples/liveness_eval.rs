//! Liveness benchmark: runs the real pipeline over a labelled set of camera
//! frames (CSV `path,label,attack,source`, as `shared/datasets/spoof_dev`)
//! and prints, per source and per attack type, AUC, APCER and BPCER at the
//! three sensitivities and at Argos' threshold 50, the quality gate's
//! refusals and the latency (results in docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release -p facegate-vision --example liveness_eval -- \
//!     [--models DIR] [--data DIR] [--runtime onnxruntime|tract] [--dump FILE.csv]
//! ```
//!
//! `--dump` writes one line per frame with every measure the liveness stage
//! looked at (for analysis; never commit it with the images' paths of a set
//! that may not be shipped).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use facegate_vision::pipeline::{Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;

#[path = "../tests/common/spoof_dev.rs"]
mod spoof_dev;
use spoof_dev::Frame;

struct Args {
    models: PathBuf,
    data: PathBuf,
    runtime: RuntimeKind,
    dump: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        models: std::env::var_os("FACEGATE_MODEL_DIR")
            .map_or_else(|| root.join("target/test-models"), PathBuf::from),
        data: spoof_dev::default_dir(),
        runtime: RuntimeKind::OnnxRuntime,
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => a.models = value()?.into(),
            "--data" => a.data = value()?.into(),
            "--dump" => a.dump = Some(value()?.into()),
            "--runtime" => {
                a.runtime = match value()?.as_str() {
                    "onnxruntime" => RuntimeKind::OnnxRuntime,
                    "tract" => RuntimeKind::Tract,
                    other => return Err(format!("unknown runtime {other}")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let frames = spoof_dev::load_labels(&args.data)?;
    let engine = Engine::load(&EngineOptions::new(&args.models, args.runtime))?;
    println!(
        "{} frames from {}; runtime {}\n",
        frames.len(),
        args.data.display(),
        engine.backend().name()
    );
    let started = Instant::now();
    let mut results = Vec::with_capacity(frames.len());
    for frame in &frames {
        results.push(spoof_dev::evaluate(&engine, &args.data, frame)?);
    }
    let total = started.elapsed().as_secs_f64();
    print!("{}", spoof_dev::report(&frames, &results));
    let mut ms: Vec<f64> = results.iter().map(|r| r.analyze_ms).collect();
    let mut live_ms: Vec<f64> = results.iter().map(|r| r.liveness_ms).collect();
    println!(
        "\nlatency per frame (ms, p50 / p95): decode + detect + liveness {:.1} / {:.1}; \
         liveness stage {:.1} / {:.1}; {total:.1} s for the set",
        spoof_dev::percentile(&mut ms, 0.5),
        spoof_dev::percentile(&mut ms, 0.95),
        spoof_dev::percentile(&mut live_ms, 0.5),
        spoof_dev::percentile(&mut live_ms, 0.95),
    );
    if let Some(path) = &args.dump {
        std::fs::write(path, dump(&frames, &results))?;
        println!("per-frame measures in {}", path.display());
    }
    Ok(())
}

fn dump(frames: &[Frame], results: &[spoof_dev::FrameResult]) -> String {
    let mut out = String::from("path,label,attack,source,faces,evidence\n");
    for (f, r) in frames.iter().zip(results) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:?}",
            f.path, f.label, f.attack, f.source, r.faces, r.evidence
        );
    }
    out
}
