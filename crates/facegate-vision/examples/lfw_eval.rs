//! Face verification on LFW (`shared/datasets/lfw_dev`: folds 2–10 of the
//! View 2 protocol, 6,894 deep-funneled images) for every embedder and
//! variant the pipeline could use: 9-fold cross-validated accuracy, TAR at
//! FAR 1e-3 / 1e-4 with impostor pairs built from all images of different
//! people, and the threshold table behind `calibration::SFACE_ANCHORS` /
//! `calibration::ANCHORS` (numbers in docs/models.md).
//!
//! ```sh
//! cargo run --release -p facegate-vision --example lfw_eval -- \
//!     MODEL_DIR ../shared/datasets/lfw_dev [--runtime onnxruntime|tract] \
//!     [--threads N] [--cache FILE] [--limit N]
//! ```
//!
//! Embeddings are cached in FILE (default `target/lfw_eval.cache`), so the
//! statistics can be re-run without the models. Per image, the face used is
//! the detection nearest the image centre (LFW's labelled person); an image
//! with no detection makes each of its pairs a non-match.
//!
//! Variants:
//! * `dlib`: the dlib ResNet path (dlib landmarks, 150 px dlib chip);
//! * `sface-yunet-rgb`: SFace on YuNet's five points, RGB input;
//! * `sface-refined-rgb`: YuNet's points with dlib-refined eyes, RGB;
//! * `sface-refined-bgr`: the same, BGR input (channel-order check);
//! * `sface-*-flip`: the chip and its mirror image, embeddings summed;
//! * `fusion(a+b)`: mean of the two cosines (the cosine of the two
//!   embeddings concatenated and scaled by 1/√2).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use facegate_vision::calibration::{l2_normalize, Calibration};
use facegate_vision::geometry::FivePoints;
use facegate_vision::pipeline::{AnalyzeOptions, Engine};
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind};
use facegate_vision::Embedder;

/// Embedding variants computed per image, in cache order.
const VARIANTS: [&str; 6] = [
    "dlib",
    "sface-yunet-rgb",
    "sface-refined-rgb",
    "sface-refined-bgr",
    "sface-yunet-rgb-flip",
    "sface-refined-rgb-flip",
];
const DIM: usize = 128;
const CACHE_MAGIC: &[u8; 8] = b"FGLFW\0\x02\0";

type Embeddings = Vec<Option<Vec<Vec<f32>>>>;

struct Args {
    model_dir: PathBuf,
    lfw: PathBuf,
    runtime: RuntimeKind,
    threads: usize,
    cache: PathBuf,
    limit: Option<usize>,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut it = std::env::args().skip(1);
    let model_dir = PathBuf::from(it.next().ok_or("MODEL_DIR")?);
    let lfw = PathBuf::from(it.next().ok_or("LFW_DIR")?);
    let mut args = Args {
        model_dir,
        lfw,
        runtime: RuntimeKind::Auto,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        cache: PathBuf::from("target/lfw_eval.cache"),
        limit: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runtime" => args.runtime = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            "--cache" => args.cache = PathBuf::from(value),
            "--limit" => args.limit = Some(value.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// One line of pairs.txt: two image indices, genuine or not, fold.
struct Pair {
    a: usize,
    b: usize,
    genuine: bool,
    fold: usize,
}

struct Dataset {
    /// Relative paths `Name/Name_NNNN.jpg`, sorted.
    images: Vec<String>,
    /// Person index of each image.
    person: Vec<usize>,
    /// Fold (0..9) of each person, from pairs.txt.
    person_fold: Vec<usize>,
    pairs: Vec<Pair>,
}

fn load_dataset(lfw: &Path) -> Result<Dataset, Box<dyn std::error::Error>> {
    let mut images = Vec::new();
    let mut people: Vec<String> = std::fs::read_dir(lfw.join("images"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    people.sort();
    let mut person = Vec::new();
    for (pi, p) in people.iter().enumerate() {
        let mut files: Vec<String> = std::fs::read_dir(lfw.join("images").join(p))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".jpg"))
            .collect();
        files.sort();
        for f in files {
            images.push(format!("{p}/{f}"));
            person.push(pi);
        }
    }
    let image_index: HashMap<String, usize> = images
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i))
        .collect();
    let text = std::fs::read_to_string(lfw.join("pairs.txt"))?;
    let mut lines = text.lines();
    let header: Vec<usize> = lines
        .next()
        .ok_or("empty pairs.txt")?
        .split_whitespace()
        .map(|v| v.parse())
        .collect::<Result<_, _>>()?;
    let (folds, per) = (header[0], header[1]);
    let name = |p: &str, n: &str| -> Result<usize, Box<dyn std::error::Error>> {
        let n: usize = n.parse()?;
        let rel = format!("{p}/{p}_{n:04}.jpg");
        Ok(*image_index.get(&rel).ok_or(format!("missing {rel}"))?)
    };
    let mut pairs = Vec::new();
    let mut person_fold = vec![usize::MAX; people.len()];
    let mut conflicts = 0;
    for fold in 0..folds {
        for k in 0..2 * per {
            let cols: Vec<&str> = lines.next().ok_or("short pairs.txt")?.split('\t').collect();
            let (a, b, genuine) = if k < per {
                (name(cols[0], cols[1])?, name(cols[0], cols[2])?, true)
            } else {
                (name(cols[0], cols[1])?, name(cols[2], cols[3])?, false)
            };
            for img in [a, b] {
                let p = person[img];
                if person_fold[p] == usize::MAX {
                    person_fold[p] = fold;
                } else if person_fold[p] != fold {
                    conflicts += 1;
                }
            }
            pairs.push(Pair {
                a,
                b,
                genuine,
                fold,
            });
        }
    }
    if conflicts > 0 {
        return Err(format!("{conflicts} people appear in more than one fold").into());
    }
    Ok(Dataset {
        images,
        person,
        person_fold,
        pairs,
    })
}

/// The detection nearest the image centre.
fn central_face(
    engine: &Engine,
    img: &image::RgbImage,
) -> Option<facegate_vision::detect::Detection> {
    let (cx, cy) = (img.width() as f32 / 2.0, img.height() as f32 / 2.0);
    engine.detect(img).ok()?.into_iter().min_by(|a, b| {
        let d = |f: &facegate_vision::detect::Detection| {
            let (x, y) = f.bbox.center();
            (x - cx).powi(2) + (y - cy).powi(2)
        };
        d(a).total_cmp(&d(b))
    })
}

fn embed_image(engine: &Engine, path: &Path) -> Option<Vec<Vec<f32>>> {
    let img = image::open(path).ok()?.to_rgb8();
    let d = central_face(engine, &img)?;
    let yunet: FivePoints = d.landmarks;
    // The refined points are what analyze() reports (YuNet with dlib eyes).
    let refined = engine
        .analyze(
            &img,
            &AnalyzeOptions {
                embedding: false,
                orientation: false,
                mask: false,
                spoofing: None,
            },
        )
        .ok()?
        .into_iter()
        .find(|f| f.bbox == d.bbox)?
        .landmarks;
    let s = |p: &FivePoints, bgr, flip| engine.embed_sface_points(&img, p, bgr, flip).ok();
    Some(vec![
        engine.embed_with(&img, &d, Embedder::Dlib).ok()?,
        s(&yunet, false, false)?,
        s(&refined, false, false)?,
        s(&refined, true, false)?,
        s(&yunet, false, true)?,
        s(&refined, false, true)?,
    ])
}

fn write_cache(path: &Path, names: &[String], emb: &Embeddings) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = Vec::new();
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    out.extend_from_slice(&(VARIANTS.len() as u32).to_le_bytes());
    for (name, e) in names.iter().zip(emb) {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match e {
            None => out.push(0),
            Some(vs) => {
                out.push(1);
                for v in vs {
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
    }
    std::fs::File::create(path)?.write_all(&out)
}

fn read_cache(path: &Path, names: &[String]) -> Option<Embeddings> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let mut pos = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(pos..pos + n)?;
        pos += n;
        Some(s)
    };
    if take(8)? != CACHE_MAGIC {
        return None;
    }
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()) as usize;
    let count = u32_of(take(4)?);
    let variants = u32_of(take(4)?);
    if count != names.len() || variants != VARIANTS.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for name in names {
        let len = u32_of(take(4)?);
        if take(len)? != name.as_bytes() {
            return None;
        }
        if take(1)?[0] == 0 {
            out.push(None);
            continue;
        }
        let mut vs = Vec::new();
        for _ in 0..variants {
            let raw = take(DIM * 4)?;
            vs.push(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            );
        }
        out.push(Some(vs));
    }
    Some(out)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Best accuracy threshold on (score, genuine) samples.
fn best_threshold(samples: &[(f32, bool)]) -> f32 {
    let mut s: Vec<(f32, bool)> = samples.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Threshold below index i: everything from i up is accepted.
    let genuine_total = s.iter().filter(|x| x.1).count();
    let mut rejected_genuine = 0;
    let mut rejected_impostor = 0;
    let mut best = (genuine_total, f32::NEG_INFINITY); // correct count, threshold
    for i in 0..s.len() {
        if s[i].1 {
            rejected_genuine += 1;
        } else {
            rejected_impostor += 1;
        }
        let next = s.get(i + 1).map_or(s[i].0 + 1e-6, |x| x.0);
        if next > s[i].0 {
            let correct = rejected_impostor + (genuine_total - rejected_genuine);
            if correct > best.0 {
                best = (correct, (s[i].0 + next) / 2.0);
            }
        }
    }
    best.1
}

/// A scoring rule: one embedding variant, or the mean cosine of two.
#[derive(Clone, Copy)]
enum Rule {
    One(usize),
    Fusion(usize, usize),
}

impl Rule {
    fn name(self) -> String {
        match self {
            Rule::One(v) => VARIANTS[v].into(),
            Rule::Fusion(a, b) => format!("fusion({}+{})", VARIANTS[a], VARIANTS[b]),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Per image, the vector whose dot products are the rule's scores.
fn rule_vectors(rule: Rule, emb: &Embeddings) -> Vec<Option<Vec<f32>>> {
    emb.iter()
        .map(|e| {
            let e = e.as_ref()?;
            Some(match rule {
                Rule::One(v) => e[v].clone(),
                Rule::Fusion(a, b) => {
                    let k = std::f32::consts::FRAC_1_SQRT_2;
                    e[a].iter().chain(&e[b]).map(|x| x * k).collect()
                }
            })
        })
        .collect()
}

/// Mean and standard deviation over the folds.
type MeanStd = (f64, f64);

struct Report {
    accuracy: MeanStd,
    /// FAR target, TAR, FAR measured on the test fold's own impostors.
    tar: Vec<(f64, MeanStd, MeanStd)>,
}

/// All scores of one rule: pairs.txt scores and the impostor tail.
fn evaluate(
    rule: Rule,
    emb: &Embeddings,
    ds: &Dataset,
    calibration: Option<&Calibration>,
) -> Report {
    let vecs = rule_vectors(rule, emb);
    let score = |a: usize, b: usize| match (&vecs[a], &vecs[b]) {
        (Some(x), Some(y)) => dot(x, y),
        _ => -1.0,
    };
    let folds = 9;
    // 9-fold accuracy on pairs.txt.
    let scored: Vec<(f32, bool, usize)> = ds
        .pairs
        .iter()
        .map(|p| (score(p.a, p.b), p.genuine, p.fold))
        .collect();
    let mut accs = Vec::new();
    for k in 0..folds {
        let train: Vec<(f32, bool)> = scored
            .iter()
            .filter(|s| s.2 != k)
            .map(|s| (s.0, s.1))
            .collect();
        let t = best_threshold(&train);
        let test: Vec<&(f32, bool, usize)> = scored.iter().filter(|s| s.2 == k).collect();
        let correct = test.iter().filter(|s| (s.0 >= t) == s.1).count();
        accs.push(correct as f64 / test.len() as f64);
    }
    // Every impostor pair among all images; fold tags of both people.
    let n = vecs.len();
    let fold_of: Vec<usize> = ds.person.iter().map(|&p| ds.person_fold[p]).collect();
    let mut all: Vec<f32> = Vec::with_capacity(n * n / 2);
    // Pairs per (fold, fold) combination, for exact training-set sizes.
    let mut counts = [[0u64; 9]; 9];
    for i in 0..n {
        for j in i + 1..n {
            if ds.person[i] == ds.person[j] {
                continue;
            }
            let (fi, fj) = (fold_of[i], fold_of[j]);
            if fi >= folds || fj >= folds {
                continue;
            }
            counts[fi.min(fj)][fi.max(fj)] += 1;
            all.push(score(i, j));
        }
    }
    let total = all.len();
    // Keep the top 1 % with tags; FAR targets below that are exact.
    let keep = total / 100;
    let mut sorted = all.clone();
    let cut = *sorted
        .select_nth_unstable_by(total - keep, |a, b| a.total_cmp(b))
        .1;
    drop(sorted);
    let mut tail: Vec<(f32, u8, u8)> = Vec::with_capacity(keep + 16);
    let mut idx = 0;
    for i in 0..n {
        for j in i + 1..n {
            if ds.person[i] == ds.person[j] {
                continue;
            }
            let (fi, fj) = (fold_of[i], fold_of[j]);
            if fi >= folds || fj >= folds {
                continue;
            }
            if all[idx] >= cut {
                tail.push((all[idx], fi as u8, fj as u8));
            }
            idx += 1;
        }
    }
    tail.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut tar = Vec::new();
    for far in [1e-3, 1e-4] {
        let (mut tars, mut fars) = (Vec::new(), Vec::new());
        for k in 0..folds {
            let train_total: u64 = (0..folds)
                .flat_map(|a| (a..folds).map(move |b| (a, b)))
                .filter(|&(a, b)| a != k && b != k)
                .map(|(a, b)| counts[a][b])
                .sum();
            let allowed = (far * train_total as f64).floor() as usize;
            let train_tail: Vec<f32> = tail
                .iter()
                .filter(|t| t.1 as usize != k && t.2 as usize != k)
                .map(|t| t.0)
                .collect();
            // Threshold: accept strictly above the (allowed+1)-th score.
            let t = train_tail.get(allowed).copied().unwrap_or(cut);
            let genuine: Vec<f32> = scored
                .iter()
                .filter(|s| s.2 == k && s.1)
                .map(|s| s.0)
                .collect();
            tars.push(genuine.iter().filter(|&&g| g > t).count() as f64 / genuine.len() as f64);
            let test_total = counts[k][k];
            let test_accepted = tail
                .iter()
                .filter(|x| x.1 as usize == k && x.2 as usize == k && x.0 > t)
                .count();
            fars.push(test_accepted as f64 / test_total as f64);
        }
        tar.push((far, mean_std(&tars), mean_std(&fars)));
    }
    if let Some(cal) = calibration {
        let genuine: Vec<f32> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
        let mut imp = all;
        imp.sort_by(f32::total_cmp);
        println!(
            "  calibration data: {} impostor pairs (all images of different people), {} genuine pairs (pairs.txt)",
            imp.len(),
            genuine.len()
        );
        // The cosine above which a fraction `far` of impostor pairs lies.
        let at_far = |far: f64| imp[imp.len() - 1 - (far * imp.len() as f64) as usize];
        let mut anchors = vec![(-1.0f32, 0.0f32)];
        for (far, sim) in [
            (0.5, 30.0),
            (1e-1, 50.0),
            (1e-2, 70.0),
            (1e-3, 80.0),
            (1e-4, 90.0),
            (1e-5, 95.0),
        ] {
            let c = at_far(far);
            let frr = genuine.iter().filter(|&&g| g < c).count() as f64 / genuine.len() as f64;
            println!("    cosine at FAR {far:.0e}: {c:.4} (FRR there {frr:.4})");
            anchors.push(((c * 1e4).round() / 1e4, sim));
        }
        anchors.push((1.0, 100.0));
        println!("    anchors fitted here (FAR 0.5 → 30, 1e-1 → 50, 1e-2 → 70, 1e-3 → 80, 1e-4 → 90, 1e-5 → 95): {anchors:?}");
        println!(
            "    impostor cosine median {:.4}, p99 {:.4}, max {:.4}; genuine min {:.4}, median {:.4}",
            imp[imp.len() / 2],
            imp[imp.len() * 99 / 100],
            imp[imp.len() - 1],
            genuine.iter().copied().fold(f32::INFINITY, f32::min),
            {
                let mut g = genuine.clone();
                g.sort_by(f32::total_cmp);
                g[g.len() / 2]
            }
        );
        println!("    threshold table with the shipped mapping (similarity, cosine, FAR, FRR):");
        for s in [30.0, 50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0] {
            let c = cal.cosine_for_similarity(s);
            let fa = imp.len() - imp.partition_point(|&x| x < c);
            let fr = genuine.iter().filter(|&&g| g < c).count();
            println!(
                "      {s:>5.1}  {c:.4}  FAR {:.2e} ({fa} pairs)  FRR {:.4}",
                fa as f64 / imp.len() as f64,
                fr as f64 / genuine.len() as f64
            );
        }
    }
    Report {
        accuracy: mean_std(&accs),
        tar,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut ds = load_dataset(&args.lfw)?;
    if let Some(limit) = args.limit {
        // A quick run: the first `limit` pairs and their images only.
        ds.pairs.truncate(limit);
    }
    println!(
        "LFW: {} images, {} pairs, {} people",
        ds.images.len(),
        ds.pairs.len(),
        ds.person_fold.len()
    );
    // A quick run embeds only the images of the first `limit` pairs.
    let wanted: Option<std::collections::HashSet<usize>> = args
        .limit
        .map(|_| ds.pairs.iter().flat_map(|p| [p.a, p.b]).collect());
    let cached = if wanted.is_some() {
        None
    } else {
        read_cache(&args.cache, &ds.images)
    };
    let emb = match cached {
        Some(e) => {
            println!("embeddings from {}", args.cache.display());
            e
        }
        None => {
            let runtime = Runtime::new(&RuntimeConfig {
                sessions_per_model: args.threads,
                ..RuntimeConfig::for_model_dir(args.runtime, &args.model_dir)
            })?;
            println!("runtime {}", runtime.backend().name());
            let engine = Engine::load_with(
                runtime,
                &args.model_dir,
                Default::default(),
                &[Embedder::Sface, Embedder::Dlib],
            )?;
            let next = AtomicUsize::new(0);
            let results: Mutex<BTreeMap<usize, Option<Vec<Vec<f32>>>>> = Default::default();
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..args.threads {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ds.images.len() {
                            break;
                        }
                        if wanted.as_ref().is_some_and(|w| !w.contains(&i)) {
                            results.lock().unwrap().insert(i, None);
                            continue;
                        }
                        let e = embed_image(&engine, &args.lfw.join("images").join(&ds.images[i]));
                        results.lock().unwrap().insert(i, e);
                        if i.is_multiple_of(500) {
                            eprintln!("{i} images, {:.0} s", start.elapsed().as_secs_f64());
                        }
                    });
                }
            });
            let emb: Embeddings = results.into_inner()?.into_values().collect();
            if wanted.is_none() {
                write_cache(&args.cache, &ds.images, &emb)?;
            }
            emb
        }
    };
    let missed: Vec<&String> = ds
        .images
        .iter()
        .zip(&emb)
        .filter(|(_, e)| e.is_none())
        .map(|(n, _)| n)
        .collect();
    println!(
        "images without a detected face: {} {:?}",
        missed.len(),
        missed
    );
    // Sanity: stored vectors are unit length.
    if let Some(Some(e)) = emb.iter().find(|e| e.is_some()) {
        let v = l2_normalize(&e[0]);
        assert!((dot(&v, &e[0]) - 1.0).abs() < 1e-4);
    }

    let rules = [
        Rule::One(0),
        Rule::One(1),
        Rule::One(2),
        Rule::One(3),
        Rule::One(4),
        Rule::One(5),
        Rule::Fusion(2, 0),
        Rule::Fusion(5, 0),
    ];
    println!(
        "\n| variant | 9-fold accuracy | TAR @ FAR 1e-3 | test FAR | TAR @ FAR 1e-4 | test FAR |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for rule in rules {
        let calibration = match rule {
            Rule::One(0) => Some(Embedder::Dlib.calibration()),
            Rule::One(_) => Some(Embedder::Sface.calibration()),
            Rule::Fusion(..) => None,
        };
        if calibration.is_some() {
            println!("{}:", rule.name());
        }
        let r = evaluate(rule, &emb, &ds, calibration);
        let pct = |(m, s): (f64, f64)| format!("{:.2} ± {:.2} %", m * 100.0, s * 100.0);
        let sci = |(m, s): (f64, f64)| format!("{m:.1e} ± {s:.1e}");
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            rule.name(),
            pct(r.accuracy),
            pct(r.tar[0].1),
            sci(r.tar[0].2),
            pct(r.tar[1].1),
            sci(r.tar[1].2)
        );
    }
    Ok(())
}
