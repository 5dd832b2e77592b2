//! Measures an embedder on ORL (40 people × 10 photos): genuine and impostor
//! cosine distributions, ROC AUC, and the false-accept / false-reject rates
//! of its similarity mapping — the ORL check of the anchors in
//! `calibration` (fitted on LFW by `examples/lfw_eval.rs`) and docs/models.md.
//!
//! `cargo run --release -p facegate-vision --example calibrate -- MODEL_DIR ORL_DIR [sface|dlib]`

use std::path::PathBuf;

use facegate_vision::calibration::cosine;
use facegate_vision::pipeline::{AnalyzeOptions, Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;
use facegate_vision::Embedder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model_dir = PathBuf::from(args.next().ok_or("MODEL_DIR")?);
    let orl = PathBuf::from(args.next().ok_or("ORL_DIR")?);
    let embedder: Embedder = args.next().as_deref().unwrap_or("sface").parse()?;
    let engine = Engine::load(
        &EngineOptions::new(&model_dir, RuntimeKind::Auto).with_embedders(&[embedder]),
    )?;
    println!("embedder {embedder} ({})", embedder.version());
    let options = AnalyzeOptions {
        embedding: true,
        orientation: false,
        mask: false,
        spoofing: None,
    };
    let mut people: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut missed = 0;
    for person in 1..=40 {
        for shot in 1..=10 {
            let path = orl.join(format!("images/s{person}/{shot}.png"));
            let img = image::open(&path)?.to_rgb8();
            match engine.analyze(&img, &options)?.first() {
                Some(face) => people.push((person, face.embedding.clone().unwrap_or_default())),
                None => missed += 1,
            }
        }
    }
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..people.len() {
        for j in i + 1..people.len() {
            let c = cosine(&people[i].1, &people[j].1);
            if people[i].0 == people[j].0 {
                genuine.push(c)
            } else {
                impostor.push(c)
            }
        }
    }
    genuine.sort_by(f32::total_cmp);
    impostor.sort_by(f32::total_cmp);
    // AUC = P(genuine > impostor), by a merge over the sorted lists.
    let mut below = 0usize;
    let mut wins = 0.0f64;
    for g in &genuine {
        while below < impostor.len() && impostor[below] < *g {
            below += 1;
        }
        wins += below as f64;
    }
    let auc = wins / (genuine.len() as f64 * impostor.len() as f64);
    println!("faces embedded: {} (no face found: {missed})", people.len());
    println!(
        "pairs: genuine {} impostor {}",
        genuine.len(),
        impostor.len()
    );
    println!("ROC AUC: {auc:.6}");
    let q = |v: &[f32], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "impostor cosine: median {:.4}  p99 {:.4}  p99.9 {:.4}  max {:.4}",
        q(&impostor, 0.5),
        q(&impostor, 0.99),
        q(&impostor, 0.999),
        impostor[impostor.len() - 1]
    );
    println!(
        "genuine cosine: min {:.4}  p1 {:.4}  median {:.4}",
        genuine[0],
        q(&genuine, 0.01),
        q(&genuine, 0.5)
    );
    println!("threshold table (similarity -> cosine, FAR, FRR):");
    for s in [50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0] {
        let c = embedder.cosine_for_similarity(s);
        let far = impostor.iter().filter(|&&x| x >= c).count() as f64 / impostor.len() as f64;
        let frr = genuine.iter().filter(|&&x| x < c).count() as f64 / genuine.len() as f64;
        println!("  {s:>5.1}  {c:.4}  FAR {far:.2e}  FRR {frr:.4}");
    }
    let frac_below_50 = impostor
        .iter()
        .filter(|&&x| embedder.similarity(x) < 50.0)
        .count() as f64
        / impostor.len() as f64;
    println!("impostor pairs below similarity 50: {:.4}", frac_below_50);
    Ok(())
}
