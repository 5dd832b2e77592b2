//! Prints what the engine finds in each image (development aid).
//!
//! `cargo run --release -p facegate-vision --example debug_probe -- MODEL_DIR IMAGE...`
use facegate_vision::pipeline::{AnalyzeOptions, Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;
use facegate_vision::spoof::SpoofCondition;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("MODEL_DIR")?;
    let engine = Engine::load(&EngineOptions::new(dir, RuntimeKind::Auto))?;
    let options = AnalyzeOptions {
        spoofing: Some(SpoofCondition::Balanced),
        ..AnalyzeOptions::default()
    };
    for path in &args[2..] {
        let img = image::open(path)?.to_rgb8();
        for f in engine.analyze(&img, &options)? {
            println!(
                "{path}: {:?} {:?} mask {:?} {:?}",
                f.bbox, f.pose, f.mask, f.spoof
            );
        }
    }
    Ok(())
}
