//! Trains the face-mask classifier (`facegate_vision::mask`) and writes the
//! weight file that facegate embeds.
//!
//! ```text
//! cargo run --release -p facegate-vision --example train_mask -- \
//!     [--dataset DIR] [--out FILE] [--cache FILE] [--hidden N] [--epochs N]
//!     [--l2 X] [--lr X] [--aug N] [--seed N] [--orl DIR] [--orl-train N] [--dry-run]
//! ```
//!
//! Data: `<workspace>/../shared/datasets/masked_faces` (labels.csv). YuNet runs
//! on every image (ONNX Runtime when provisioned, tract otherwise); the
//! detections are cached so reruns only redo the cheap part. `rmfd_real`
//! photos contribute every face ≥ 40 px (all masked), prajnasb photos their
//! largest face. The split is by image, stratified by (source, label): within
//! a stratum images are ordered by FNV-1a-64 of their path; the first 20 % are
//! the held-out test set, the next 15 % the validation set that picks the
//! epoch, the rest train. `tests/mask.rs` uses the same rule.
//!
//! The dataset's only unmasked faces are near-frontal web photos, so ORL
//! subjects 1–20 (`<workspace>/../shared/datasets/orl_faces`, grey studio
//! portraits) are added as training negatives; subjects 21–40 and the six
//! people of `target/test-assets/t1.jpg` are reported as out-of-domain
//! negatives. Training faces get augmented copies (landmark jitter, colour,
//! low resolution, mirroring); classes are weighted to balance.
//!
//! The committed weights came from the defaults (`--hidden 16`, seed
//! 0x5eedf00d), run as a dev build.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use facegate_vision::detect::{Detection, Detector, DetectorOptions};
use facegate_vision::geometry::{BoxF, FivePoints, Point};
use facegate_vision::mask::{
    aligned_crop, features, sigmoid, MaskClassifier, MaskWeights, CROP_SIZE, FEATURE_LEN,
    MASK_THRESHOLD,
};
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind, ORT_LIBRARY_NAME};
use image::imageops::{self, FilterType};
use image::RgbImage;

type Res<T> = std::result::Result<T, Box<dyn Error>>;

const TEST_FRACTION: f64 = 0.20;
const VAL_FRACTION: f64 = 0.15;
const RMFD_MIN_FACE_PX: f32 = 40.0;

struct Args {
    dataset: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    hidden: usize,
    epochs: usize,
    l2: f32,
    lr: f32,
    seed: u64,
    dry_run: bool,
    /// Augmented copies per masked training face (twice that per unmasked).
    aug: usize,
    orl: PathBuf,
    /// ORL subjects 1..=N are training negatives; the rest are evaluated.
    orl_train: usize,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args() -> Res<Args> {
    let root = workspace_root();
    let mut a = Args {
        dataset: root.join("../shared/datasets/masked_faces"),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/mask_weights.bin"),
        cache: root.join("target/tmp/mask_detections.tsv"),
        hidden: 16,
        epochs: 60,
        l2: 1e-3,
        lr: 1e-3,
        seed: 0x5eed_f00d,
        dry_run: false,
        aug: 2,
        orl_train: 20,
        orl: root.join("../shared/datasets/orl_faces"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--dry-run" {
            a.dry_run = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dataset" => a.dataset = value.into(),
            "--out" => a.out = value.into(),
            "--cache" => a.cache = value.into(),
            "--hidden" => a.hidden = value.parse()?,
            "--epochs" => a.epochs = value.parse()?,
            "--l2" => a.l2 = value.parse()?,
            "--lr" => a.lr = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            "--aug" => a.aug = value.parse()?,
            "--orl" => a.orl = value.into(),
            "--orl-train" => a.orl_train = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Split {
    Train,
    Val,
    Test,
}

struct Row {
    path: String,
    mask: bool,
    rmfd: bool,
    split: Split,
}

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn read_rows(dataset: &Path) -> Res<Vec<Row>> {
    let text = std::fs::read_to_string(dataset.join("labels.csv"))?;
    let mut strata: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 {
            return Err(format!("bad labels.csv line: {line}").into());
        }
        strata
            .entry((cols[2].to_string(), cols[1] == "1"))
            .or_default()
            .push(cols[0].to_string());
    }
    let mut rows = Vec::new();
    for ((source, mask), mut paths) in strata {
        paths.sort_by_key(|p| (fnv1a64(p), p.clone()));
        let n = paths.len() as f64;
        let n_test = (n * TEST_FRACTION).round() as usize;
        let n_val = (n * VAL_FRACTION).round() as usize;
        for (i, path) in paths.into_iter().enumerate() {
            let split = if i < n_test {
                Split::Test
            } else if i < n_test + n_val {
                Split::Val
            } else {
                Split::Train
            };
            rows.push(Row {
                path,
                mask,
                rmfd: source == "rmfd_real",
                split,
            });
        }
    }
    Ok(rows)
}

fn load_runtime() -> Res<Runtime> {
    let lib = workspace_root()
        .join("target/test-models/sources")
        .join(ORT_LIBRARY_NAME);
    if lib.is_file() {
        return Ok(Runtime::new(&RuntimeConfig {
            kind: RuntimeKind::OnnxRuntime,
            ort_library: Some(lib),
            sessions_per_model: 1,
            lone_run_threads: 1,
        })?);
    }
    eprintln!("ONNX Runtime not provisioned; detecting with tract (slower)");
    Ok(Runtime::tract())
}

/// Detections per image path: `None` when the image failed to decode.
type DetCache = BTreeMap<String, Option<Vec<Detection>>>;

fn read_cache(path: &Path) -> DetCache {
    let mut cache = DetCache::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return cache;
    };
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(p), Some(body)) = (parts.next(), parts.next()) else {
            continue;
        };
        if body == "undecodable" {
            cache.insert(p.to_string(), None);
            continue;
        }
        let faces: Option<Vec<Detection>> = body
            .split(';')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let v: Vec<f32> = f.split(',').filter_map(|x| x.parse().ok()).collect();
                (v.len() == 15).then(|| {
                    let pt = |i: usize| Point {
                        x: v[5 + 2 * i],
                        y: v[6 + 2 * i],
                    };
                    Detection {
                        bbox: BoxF {
                            x0: v[0],
                            y0: v[1],
                            x1: v[2],
                            y1: v[3],
                        },
                        score: v[4],
                        landmarks: FivePoints {
                            left_eye: pt(0),
                            right_eye: pt(1),
                            nose: pt(2),
                            left_lip: pt(3),
                            right_lip: pt(4),
                        },
                    }
                })
            })
            .collect();
        if let Some(faces) = faces {
            cache.insert(p.to_string(), Some(faces));
        }
    }
    cache
}

fn write_cache(path: &Path, cache: &DetCache) -> Res<()> {
    let mut s = String::new();
    for (p, faces) in cache {
        match faces {
            None => writeln!(s, "{p}\tundecodable")?,
            Some(faces) => {
                write!(s, "{p}\t")?;
                for f in faces {
                    let b = f.bbox;
                    write!(s, "{},{},{},{},{}", b.x0, b.y0, b.x1, b.y1, f.score)?;
                    for q in f.landmarks.as_array() {
                        write!(s, ",{},{}", q.x, q.y)?;
                    }
                    s.push(';');
                }
                s.push('\n');
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s)?;
    Ok(())
}

use facegate_test_support::rng::SplitMix64 as Rng;

struct Sample {
    x: Vec<f32>,
    y: bool,
    rmfd: bool,
    split: Split,
    augmented: bool,
    /// An ORL training negative (not from the mask dataset).
    orl: bool,
}

/// A randomly perturbed training crop of one face:
/// * the landmarks move (similarity jitter plus per-point noise), because
///   YuNet places them less precisely on masked faces and the model must not
///   learn "misaligned means masked";
/// * with `low_res`, the face is aligned at 12–24 px and scaled up, so
///   sharpness cannot tell the sources apart (RMFD faces, all masked, are
///   small and soft; prajnasb faces large and sharp);
/// * colour gains and exposure change, and the crop may be mirrored.
fn augmented_crop(
    image: &RgbImage,
    lm: &FivePoints,
    low_res: bool,
    rng: &mut Rng,
) -> Res<RgbImage> {
    let mut u = |lo: f32, hi: f32| lo + (hi - lo) * rng.fraction();
    let eye = ((lm.right_eye.x - lm.left_eye.x).powi(2) + (lm.right_eye.y - lm.left_eye.y).powi(2))
        .sqrt()
        .max(1.0);
    let (scale, angle) = (u(0.92, 1.08), u(-0.15, 0.15));
    let (dx, dy) = (u(-0.06, 0.06) * eye, u(-0.06, 0.06) * eye);
    let (c, sn) = (angle.cos() * scale, angle.sin() * scale);
    let centre = lm.nose;
    let mut pts = lm.as_array();
    for p in &mut pts {
        let (x, y) = (p.x - centre.x, p.y - centre.y);
        p.x = centre.x + c * x - sn * y + dx + u(-0.04, 0.04) * eye;
        p.y = centre.y + sn * x + c * y + dy + u(-0.04, 0.04) * eye;
    }
    let jittered = FivePoints {
        left_eye: pts[0],
        right_eye: pts[1],
        nose: pts[2],
        left_lip: pts[3],
        right_lip: pts[4],
    };
    let mut crop = if low_res {
        let small = aligned_crop(image, &jittered, 12 + (u(0.0, 13.0) as u32).min(12))?;
        imageops::resize(&small, CROP_SIZE, CROP_SIZE, FilterType::Triangle)
    } else {
        aligned_crop(image, &jittered, CROP_SIZE)?
    };
    let exposure = u(0.7, 1.3);
    let gains = [u(0.88, 1.12), u(0.88, 1.12), u(0.88, 1.12)].map(|g| g * exposure);
    for p in crop.pixels_mut() {
        for (v, g) in p.0.iter_mut().zip(gains) {
            *v = (f32::from(*v) * g).round().clamp(0.0, 255.0) as u8;
        }
    }
    if u(0.0, 1.0) < 0.5 {
        crop = imageops::flip_horizontal(&crop);
    }
    Ok(crop)
}

/// Faces that are certainly unmasked but come from neither training source:
/// ORL (grey studio portraits, largest face) and t1.jpg (six people in a
/// real scene). The mask rate on them estimates false positives outside the
/// training distribution.
fn out_of_domain_negatives(
    detector: &Detector,
    orl: &Path,
) -> Res<Vec<(String, RgbImage, Detection)>> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(orl.join("labels.csv")) {
        for line in text.lines().skip(1) {
            let Some(path) = line.split(',').next() else {
                continue;
            };
            let img = image::open(orl.join(path))?.to_rgb8();
            if let Some(face) = detector.detect(&img)?.into_iter().next() {
                out.push((format!("orl/{path}"), img, face));
            }
        }
    }
    let t1 = workspace_root().join("target/test-assets/t1.jpg");
    if let Ok(img) = image::open(&t1) {
        let img = img.to_rgb8();
        for (i, face) in detector.detect(&img)?.into_iter().enumerate() {
            out.push((format!("t1/{i}"), img.clone(), face));
        }
    }
    Ok(out)
}

/// ORL subject number of an out-of-domain sample name (`orl/images/sK/..`).
fn orl_identity(name: &str) -> Option<usize> {
    name.strip_prefix("orl/images/s")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

struct Model {
    hidden: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: f32,
}

impl Model {
    fn new(hidden: usize, rng: &mut Rng) -> Self {
        let n = FEATURE_LEN;
        let mut uni = |k: usize, lim: f32| -> Vec<f32> {
            (0..k).map(|_| (rng.fraction() * 2.0 - 1.0) * lim).collect()
        };
        if hidden == 0 {
            return Self {
                hidden,
                w1: Vec::new(),
                b1: Vec::new(),
                w2: vec![0.0; n],
                b2: 0.0,
            };
        }
        Self {
            hidden,
            w1: uni(hidden * n, (6.0 / n as f32).sqrt()),
            b1: vec![0.0; hidden],
            w2: uni(hidden, (6.0 / hidden as f32).sqrt() * 0.5),
            b2: 0.0,
        }
    }

    /// Returns the logit; fills `act` with the hidden activations.
    fn forward(&self, z: &[f32], act: &mut [f32]) -> f32 {
        if self.hidden == 0 {
            return dot(&self.w2, z) + self.b2;
        }
        let mut out = self.b2;
        for (j, row) in self.w1.chunks_exact(FEATURE_LEN).enumerate() {
            act[j] = (dot(row, z) + self.b1[j]).max(0.0);
            out += act[j] * self.w2[j];
        }
        out
    }

    fn params_mut(&mut self) -> [&mut [f32]; 3] {
        [&mut self.w1, &mut self.b1, &mut self.w2]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Adam {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    mb: [f32; 2],
    t: i32,
}

/// Trains with Adam on class-weighted logistic loss plus L2 on the weights;
/// returns the model of the epoch with the lowest validation loss.
fn train(
    train: &[(Vec<f32>, bool)],
    val: &[(Vec<f32>, bool)],
    args: &Args,
    rng: &mut Rng,
) -> Model {
    let mut model = Model::new(args.hidden, rng);
    let pos = train.iter().filter(|s| s.1).count() as f32;
    let neg = train.len() as f32 - pos;
    let total = train.len() as f32;
    let class_w = |y: bool| {
        if y {
            total / (2.0 * pos)
        } else {
            total / (2.0 * neg)
        }
    };
    let vpos = val.iter().filter(|s| s.1).count().max(1) as f32;
    let vneg = (val.len() as f32 - vpos).max(1.0);
    let val_loss = |m: &Model| {
        let mut act = vec![0.0; m.hidden];
        let mut l = 0.0f64;
        for (x, y) in val {
            let p = sigmoid(m.forward(x, &mut act)).clamp(1e-6, 1.0 - 1e-6);
            let w = if *y { 0.5 / vpos } else { 0.5 / vneg };
            l -= f64::from(w * if *y { p.ln() } else { (1.0 - p).ln() });
        }
        l
    };
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam {
        m: sizes.iter().map(|&k| vec![0.0; k]).collect(),
        v: sizes.iter().map(|&k| vec![0.0; k]).collect(),
        mb: [0.0; 2],
        t: 0,
    };
    let mut grads: Vec<Vec<f32>> = sizes.iter().map(|&k| vec![0.0; k]).collect();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut act = vec![0.0; args.hidden];
    let (mut best, mut best_loss, mut best_epoch) = (None, f64::INFINITY, 0);
    const BATCH: usize = 32;
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    for epoch in 0..args.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for batch in order.chunks(BATCH) {
            grads.iter_mut().for_each(|g| g.fill(0.0));
            let mut gb2 = 0.0;
            for &i in batch {
                let (x, y) = &train[i];
                let p = sigmoid(model.forward(x, &mut act));
                // d(weighted BCE)/d(logit).
                let d = class_w(*y) * (p - if *y { 1.0 } else { 0.0 }) / batch.len() as f32;
                gb2 += d;
                if model.hidden == 0 {
                    for (g, xi) in grads[2].iter_mut().zip(x) {
                        *g += d * xi;
                    }
                    continue;
                }
                for j in 0..model.hidden {
                    grads[2][j] += d * act[j];
                    if act[j] > 0.0 {
                        let dh = d * model.w2[j];
                        grads[1][j] += dh;
                        let row = &mut grads[0][j * FEATURE_LEN..(j + 1) * FEATURE_LEN];
                        for (g, xi) in row.iter_mut().zip(x) {
                            *g += dh * xi;
                        }
                    }
                }
            }
            adam.t += 1;
            let bc1 = 1.0 - beta1.powi(adam.t);
            let bc2 = 1.0 - beta2.powi(adam.t);
            let params = model.params_mut();
            for (k, p) in params.into_iter().enumerate() {
                // Biases (k == 1) are not decayed.
                let l2 = if k == 1 { 0.0 } else { args.l2 };
                for i in 0..p.len() {
                    let g = grads[k][i] + l2 * p[i];
                    adam.m[k][i] = beta1 * adam.m[k][i] + (1.0 - beta1) * g;
                    adam.v[k][i] = beta2 * adam.v[k][i] + (1.0 - beta2) * g * g;
                    p[i] -= args.lr * (adam.m[k][i] / bc1) / ((adam.v[k][i] / bc2).sqrt() + eps);
                }
            }
            adam.mb[0] = beta1 * adam.mb[0] + (1.0 - beta1) * gb2;
            adam.mb[1] = beta2 * adam.mb[1] + (1.0 - beta2) * gb2 * gb2;
            model.b2 -= args.lr * (adam.mb[0] / bc1) / ((adam.mb[1] / bc2).sqrt() + eps);
        }
        let l = val_loss(&model);
        if l < best_loss {
            best_loss = l;
            best_epoch = epoch + 1;
            best = Some(Model {
                hidden: model.hidden,
                w1: model.w1.clone(),
                b1: model.b1.clone(),
                w2: model.w2.clone(),
                b2: model.b2,
            });
        }
    }
    println!(
        "best validation loss {best_loss:.4} at epoch {best_epoch}/{}",
        args.epochs
    );
    best.unwrap_or(model)
}

struct Metrics {
    n: usize,
    acc: f64,
    precision: f64,
    recall: f64,
    auc: Option<f64>,
}

fn metrics(scored: &[(f32, bool)]) -> Metrics {
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for &(p, y) in scored {
        match (p >= MASK_THRESHOLD, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let n = scored.len();
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    // AUC as the Mann-Whitney statistic with average ranks for ties.
    let mut sorted: Vec<(f32, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        rank_sum += avg * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let (np, nn) = (tp + fn_, tn + fp);
    let auc =
        (np > 0 && nn > 0).then(|| (rank_sum - (np * (np + 1)) as f64 / 2.0) / (np * nn) as f64);
    Metrics {
        n,
        acc: ratio(tp + tn, n),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, np),
        auc,
    }
}

fn report(name: &str, scored: &[(f32, bool)]) {
    let m = metrics(scored);
    let auc = m.auc.map_or("n/a".to_string(), |a| format!("{a:.4}"));
    let pos = scored.iter().filter(|s| s.1).count();
    println!(
        "{name:<22} n={:<5} (mask {pos:>4}) acc {:.4}  precision {:.4}  recall {:.4}  AUC {auc}",
        m.n, m.acc, m.precision, m.recall
    );
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let rows = read_rows(&args.dataset)?;
    println!("{} images in {}", rows.len(), args.dataset.display());

    // 1. Detection (cached).
    let mut cache = read_cache(&args.cache);
    let missing: Vec<&Row> = rows
        .iter()
        .filter(|r| !cache.contains_key(&r.path))
        .collect();
    let runtime = load_runtime()?;
    let onnx = std::fs::read(
        workspace_root().join("target/test-models/sources/face_detection_yunet_2023mar.onnx"),
    )?;
    let detector = Detector::load(&runtime, &onnx, DetectorOptions::default())?;
    if !missing.is_empty() {
        let t = Instant::now();
        for (k, r) in missing.iter().enumerate() {
            let faces = match image::open(args.dataset.join(&r.path)) {
                Ok(img) => Some(detector.detect(&img.to_rgb8())?),
                Err(_) => None,
            };
            cache.insert(r.path.clone(), faces);
            if (k + 1) % 200 == 0 {
                println!("detected {}/{} ({:.0?})", k + 1, missing.len(), t.elapsed());
                write_cache(&args.cache, &cache)?;
            }
        }
        write_cache(&args.cache, &cache)?;
        println!(
            "detection on {} images took {:.1?} ({:?})",
            missing.len(),
            t.elapsed(),
            runtime.backend()
        );
    }
    let ood = out_of_domain_negatives(&detector, &args.orl)?;

    // 2. Faces and features.
    let mut rng = Rng(args.seed);
    let mut samples: Vec<Sample> = Vec::new();
    let mut no_face: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut undecodable = 0;
    let t = Instant::now();
    for r in &rows {
        let group = match (r.rmfd, r.mask) {
            (true, _) => "rmfd_real",
            (false, true) => "prajnasb/with_mask",
            (false, false) => "prajnasb/without_mask",
        };
        let entry = no_face.entry(group).or_default();
        entry.1 += 1;
        let Some(faces) = cache.get(&r.path).cloned().flatten() else {
            undecodable += 1;
            continue;
        };
        let faces: Vec<Detection> = if r.rmfd {
            faces
                .into_iter()
                .filter(|f| f.bbox.width().min(f.bbox.height()) >= RMFD_MIN_FACE_PX)
                .collect()
        } else {
            faces.into_iter().take(1).collect()
        };
        if faces.is_empty() {
            entry.0 += 1;
            continue;
        }
        let img = image::open(args.dataset.join(&r.path))?.to_rgb8();
        for f in &faces {
            let crop = aligned_crop(&img, &f.landmarks, CROP_SIZE)?;
            let mut push = |x: Vec<f32>, augmented: bool| {
                samples.push(Sample {
                    x,
                    y: r.mask,
                    rmfd: r.rmfd,
                    split: r.split,
                    augmented,
                    orl: false,
                })
            };
            push(features(&crop)?, false);
            if r.split == Split::Train {
                // Unmasked faces are the minority: give them more variants.
                let copies = if r.mask { args.aug } else { 2 * args.aug };
                for k in 0..copies {
                    let low_res = !r.rmfd && k % 2 == 1;
                    let c = augmented_crop(&img, &f.landmarks, low_res, &mut rng)?;
                    push(features(&c)?, true);
                }
            }
        }
    }
    // ORL subjects up to `--orl-train` are extra training negatives: the
    // only unmasked faces of the dataset are near-frontal web photos, and
    // without other negatives turned heads read as masked.
    let mut orl_train = 0;
    for (name, img, face) in &ood {
        if orl_identity(name).is_some_and(|k| k <= args.orl_train) {
            orl_train += 1;
            let crop = aligned_crop(img, &face.landmarks, CROP_SIZE)?;
            let mut variants = vec![(features(&crop)?, false)];
            for k in 0..2 * args.aug {
                let c = augmented_crop(img, &face.landmarks, k % 2 == 1, &mut rng)?;
                variants.push((features(&c)?, true));
            }
            samples.extend(variants.into_iter().map(|(x, augmented)| Sample {
                x,
                y: false,
                rmfd: false,
                split: Split::Train,
                augmented,
                orl: true,
            }));
        }
    }
    println!(
        "ORL training negatives: {orl_train} faces of subjects 1..={}",
        args.orl_train
    );
    println!(
        "features for {} faces in {:.1?}",
        samples.len(),
        t.elapsed()
    );
    println!("undecodable images: {undecodable}");
    for (g, (none, all)) in &no_face {
        println!("{g:<22} {all:>5} images, {none:>4} without a usable face");
    }
    for split in [Split::Train, Split::Val, Split::Test] {
        let s: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.split == split && !s.augmented)
            .collect();
        let c = |rmfd: bool, y: bool| {
            s.iter()
                .filter(|s| s.rmfd == rmfd && s.y == y && !s.orl)
                .count()
        };
        println!(
            "{split:?}: faces rmfd {} | prajnasb mask {} / no mask {} (+{} augmented)",
            c(true, true),
            c(false, true),
            c(false, false),
            samples
                .iter()
                .filter(|x| x.split == split && x.augmented)
                .count()
        );
    }

    // 3. Standardise on the training split.
    let n = FEATURE_LEN;
    let train_rows: Vec<&Sample> = samples.iter().filter(|s| s.split == Split::Train).collect();
    let mut mean = vec![0.0f64; n];
    let mut sq = vec![0.0f64; n];
    for s in &train_rows {
        for (i, v) in s.x.iter().enumerate() {
            mean[i] += f64::from(*v);
            sq[i] += f64::from(*v) * f64::from(*v);
        }
    }
    let count = train_rows.len().max(1) as f64;
    let mean: Vec<f32> = mean.iter().map(|m| (m / count) as f32).collect();
    let inv_std: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let var = (s / count - f64::from(*m) * f64::from(*m)).max(0.0);
            1.0 / (var.sqrt() as f32).max(1e-3)
        })
        .collect();
    let standardise = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .zip(&mean)
            .zip(&inv_std)
            .map(|((v, m), s)| (v - m) * s)
            .collect()
    };
    let set = |split: Split| -> Vec<(Vec<f32>, bool)> {
        samples
            .iter()
            .filter(|s| s.split == split)
            .map(|s| (standardise(&s.x), s.y))
            .collect()
    };
    let (train_set, val_set) = (set(Split::Train), set(Split::Val));

    // 4. Train.
    let t = Instant::now();
    let model = train(&train_set, &val_set, &args, &mut rng);
    println!("trained hidden={} in {:.1?}", model.hidden, t.elapsed());
    let weights = MaskWeights {
        threshold: MASK_THRESHOLD,
        mean: mean.clone(),
        inv_std: inv_std.clone(),
        hidden: model.hidden,
        w1: model.w1,
        b1: model.b1,
        w2: model.w2,
        b2: model.b2,
    };
    let bytes = weights.to_bytes()?;
    let classifier = MaskClassifier::from_bytes(&bytes)?;

    // 5. Evaluate through the shipped code path (parsed weights).
    let score = |split: Split, filter: &dyn Fn(&Sample) -> bool| -> Vec<(f32, bool)> {
        samples
            .iter()
            .filter(|s| s.split == split && !s.augmented && filter(s))
            .map(|s| (sigmoid(classifier.weights().logit(&s.x)), s.y))
            .collect()
    };
    println!("--- threshold {MASK_THRESHOLD} ---");
    report("train", &score(Split::Train, &|_| true));
    report("validation", &score(Split::Val, &|_| true));
    report("TEST overall", &score(Split::Test, &|_| true));
    report("TEST rmfd_real", &score(Split::Test, &|s| s.rmfd));
    report("TEST prajnasb", &score(Split::Test, &|s| !s.rmfd));
    report(
        "TEST prajnasb mask",
        &score(Split::Test, &|s| !s.rmfd && s.y),
    );
    report(
        "TEST prajnasb nomask",
        &score(Split::Test, &|s| !s.rmfd && !s.y),
    );
    let mut flagged = BTreeMap::<&str, (usize, usize)>::new();
    for (name, img, face) in &ood {
        if orl_identity(name).is_some_and(|k| k <= args.orl_train) {
            continue;
        }
        let p = classifier.predict(img, face)?;
        let e = flagged
            .entry(if name.starts_with("t1") {
                "t1.jpg"
            } else {
                "ORL"
            })
            .or_default();
        e.1 += 1;
        if p.is_masked() {
            e.0 += 1;
            println!("  false positive {name}: p = {:.3}", p.probability);
        }
    }
    for (set, (fp, n)) in flagged {
        println!("unmasked {set:<8} {fp}/{n} flagged masked");
    }

    // Per-face cost of the full path: crop + features + model.
    if let Some(r) = rows.iter().find(|r| !r.rmfd && r.split == Split::Test) {
        if let Some(Some(faces)) = cache.get(&r.path) {
            if let Some(face) = faces.first() {
                let img = image::open(args.dataset.join(&r.path))?.to_rgb8();
                let t = Instant::now();
                let reps = 2000;
                for _ in 0..reps {
                    std::hint::black_box(classifier.predict(&img, face)?);
                }
                println!("predict: {:.1?} per face", t.elapsed() / reps);
            }
        }
    }

    println!("weights: {} bytes", bytes.len());
    if args.dry_run {
        println!("--dry-run: not writing {}", args.out.display());
    } else {
        std::fs::write(&args.out, &bytes)?;
        println!("wrote {}", args.out.display());
    }
    Ok(())
}
