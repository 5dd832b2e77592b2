//! The liveness development set (`shared/datasets/spoof_dev`, CSV
//! `path,label,attack,source`) and the metrics the liveness benchmark
//! (examples/liveness_eval.rs) and test (tests/liveness.rs) report: AUC,
//! APCER and BPCER per source and per attack type, at each sensitivity.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use facegate_vision::liveness;
use facegate_vision::liveness::LivenessEvidence;
use facegate_vision::pipeline::Engine;
use facegate_vision::quality::QualityIssue;
use facegate_vision::spoof::SpoofCondition;

/// `$FACEGATE_TEST_SPOOF_DEV`, else `<workspace>/../shared/datasets/spoof_dev`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_SPOOF_DEV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/spoof_dev"),
        PathBuf::from,
    )
}

/// One labelled frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub path: String,
    pub label: String,
    pub attack: String,
    pub source: String,
}

impl Frame {
    pub fn is_live(&self) -> bool {
        self.label == "live"
    }
    /// Prints and screens: the flat attacks MiniFASNet was trained on.
    pub fn is_flat_attack(&self) -> bool {
        matches!(self.attack.as_str(), "print" | "screen")
    }
}

/// Reads `labels.csv`; the error says how to provide the set.
pub fn load_labels(dir: &Path) -> Result<Vec<Frame>, String> {
    let csv = dir.join("labels.csv");
    let text = std::fs::read_to_string(&csv).map_err(|e| {
        format!(
            "{}: {e}. The liveness set is missing: mount shared/ beside the workspace \
             or point FACEGATE_TEST_SPOOF_DEV at a folder with labels.csv (path,label,attack,source)",
            csv.display()
        )
    })?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.trim() != "path,label,attack,source" {
        return Err(format!("{}: unexpected header {header:?}", csv.display()));
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            match f[..] {
                [path, label, attack, source] if label == "live" || label == "spoof" => Ok(Frame {
                    path: path.into(),
                    label: label.into(),
                    attack: attack.into(),
                    source: source.into(),
                }),
                _ => Err(format!("{}: bad line {l:?}", csv.display())),
            }
        })
        .collect()
}

/// What the pipeline made of one frame (its largest face).
#[derive(Debug, Clone)]
pub struct FrameResult {
    pub faces: usize,
    pub evidence: Option<LivenessEvidence>,
    /// Decode, detection and liveness, milliseconds.
    pub analyze_ms: f64,
    /// Liveness (quality gate + models) alone.
    pub liveness_ms: f64,
}

impl FrameResult {
    /// The reported score (0 when no face was found).
    pub fn score(&self) -> f32 {
        self.evidence.as_ref().map_or(0.0, |e| e.real_probability)
    }
    /// Why the face could not be judged (no face counts as too small).
    pub fn issue(&self) -> Option<QualityIssue> {
        match &self.evidence {
            Some(e) => e.quality.issue(),
            None => Some(QualityIssue::FaceTooSmall),
        }
    }
    /// Accepted as live at `threshold` (unjudgeable faces never are).
    pub fn accepted(&self, threshold: f32) -> bool {
        self.issue().is_none() && self.score() >= threshold
    }
}

/// Decodes a frame as the server does and runs liveness on its largest face.
pub fn evaluate(engine: &Engine, dir: &Path, frame: &Frame) -> Result<FrameResult, String> {
    let path = dir.join(&frame.path);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t0 = Instant::now();
    let limits = facegate_image::Limits {
        max_bytes: 50_000_000,
        ..Default::default()
    };
    let image =
        facegate_image::decode(&bytes, &limits).map_err(|e| format!("{}: {e}", path.display()))?;
    let faces = engine.detect(&image).map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let evidence = match faces.first() {
        Some(d) => Some(
            engine
                .liveness_evidence(&image, &d.bbox, &d.landmarks)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    Ok(FrameResult {
        faces: faces.len(),
        evidence,
        analyze_ms: ms(t0.elapsed()),
        liveness_ms: ms(t1.elapsed()),
    })
}

/// Value at quantile `q` (sorts `v`).
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    facegate_test_support::stats::percentile(v, q)
}

/// ROC AUC of scores (live high): the probability that a random live frame
/// scores above a random spoof, ties counting half. NaN when a class is
/// empty.
pub fn auc(live: &[f32], spoof: &[f32]) -> f64 {
    if live.is_empty() || spoof.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &l in live {
        for &s in spoof {
            wins += if l > s {
                1.0
            } else if l == s {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (live.len() * spoof.len()) as f64
}

/// Error rates of a group of frames at one threshold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    pub live: usize,
    pub spoof: usize,
    /// Live frames refused.
    pub live_refused: usize,
    /// Attack frames accepted.
    pub spoof_accepted: usize,
}

impl Metrics {
    pub fn of<'a>(
        group: impl IntoIterator<Item = (&'a Frame, &'a FrameResult)>,
        threshold: f32,
    ) -> Self {
        let mut m = Metrics::default();
        for (f, r) in group {
            let ok = r.accepted(threshold);
            if f.is_live() {
                m.live += 1;
                m.live_refused += usize::from(!ok);
            } else {
                m.spoof += 1;
                m.spoof_accepted += usize::from(ok);
            }
        }
        m
    }
    /// Share of live frames refused (NaN without live frames).
    pub fn bpcer(&self) -> f64 {
        self.live_refused as f64 / self.live as f64
    }
    /// Share of attack frames accepted (NaN without attacks).
    pub fn apcer(&self) -> f64 {
        self.spoof_accepted as f64 / self.spoof as f64
    }
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * v)
    }
}

/// The levels reported: the three sensitivities, then Argos' 50.
pub fn levels() -> Vec<(String, f32)> {
    let all = [
        SpoofCondition::Weak,
        SpoofCondition::Balanced,
        SpoofCondition::Strict,
    ];
    let mut v: Vec<(String, f32)> = all
        .iter()
        .map(|&c| (format!("{c:?}").to_lowercase(), liveness::threshold(c)))
        .collect();
    v.push(("argos 50".into(), 0.5));
    v
}

/// Markdown tables: per source and per attack type (each attack type against
/// every live frame), then overall; AUC on the reported score and
/// APCER/BPCER at each level; then the quality gate's refusals.
pub fn report(frames: &[Frame], results: &[FrameResult]) -> String {
    let pairs: Vec<(&Frame, &FrameResult)> = frames.iter().zip(results).collect();
    let mut groups: BTreeMap<String, Vec<(&Frame, &FrameResult)>> = BTreeMap::new();
    for &(f, r) in &pairs {
        groups
            .entry(format!("source {}", f.source))
            .or_default()
            .push((f, r));
        if !f.is_live() {
            groups
                .entry(format!("attack {}", f.attack))
                .or_default()
                .push((f, r));
        }
    }
    let live: Vec<_> = pairs.iter().copied().filter(|(f, _)| f.is_live()).collect();
    for (name, g) in groups.iter_mut() {
        if name.starts_with("attack") {
            g.extend(live.iter().copied());
        }
    }
    groups.insert("all".into(), pairs.clone());
    let levels = levels();
    let mut out = String::from("| group | live | attacks | AUC |");
    for (name, t) in &levels {
        let _ = write!(out, " {name} ({t:.2}) APCER / BPCER |");
    }
    out.push_str("\n| --- | --- | --- | --- |");
    out.push_str(&" --- |".repeat(levels.len()));
    out.push('\n');
    for (name, g) in &groups {
        let (l, s): (Vec<_>, Vec<_>) = g.iter().partition(|(f, _)| f.is_live());
        let score = |v: &Vec<&(&Frame, &FrameResult)>| -> Vec<f32> {
            v.iter()
                .map(|(_, r)| if r.issue().is_some() { 0.0 } else { r.score() })
                .collect()
        };
        let a = auc(&score(&l), &score(&s));
        let _ = write!(
            out,
            "| {name} | {} | {} | {} |",
            l.len(),
            s.len(),
            if a.is_nan() {
                "–".into()
            } else {
                format!("{a:.3}")
            }
        );
        for (_, t) in &levels {
            let m = Metrics::of(g.iter().copied(), *t);
            let _ = write!(out, " {} / {} |", pct(m.apcer()), pct(m.bpcer()));
        }
        out.push('\n');
    }
    // Quality gate: which frames each gate stops, live and attack.
    out.push_str(
        "\n| quality gate | live frames refused | attack frames stopped |\n| --- | --- | --- |\n",
    );
    for issue in [
        None,
        Some(QualityIssue::FaceTooSmall),
        Some(QualityIssue::Pose),
        Some(QualityIssue::Blur),
        Some(QualityIssue::Exposure),
    ] {
        let count = |live: bool| {
            pairs
                .iter()
                .filter(|(f, r)| {
                    f.is_live() == live
                        && match issue {
                            None => r.evidence.is_none(),
                            Some(i) => r.evidence.is_some() && r.issue() == Some(i),
                        }
                })
                .count()
        };
        let name = issue.map_or("no face found".to_string(), |i| format!("{i:?}"));
        let _ = writeln!(out, "| {name} | {} | {} |", count(true), count(false));
    }
    out
}
