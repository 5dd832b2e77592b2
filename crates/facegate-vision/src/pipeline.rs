//! The per-image pipeline: detect → landmarks → pose → align → embed →
//! liveness → mask, over the models of one model directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{GenericImageView, RgbImage};
use serde::Serialize;

use crate::batch::{BatchStats, Batching};
use crate::detect::{Detection, Detector, DetectorOptions};
use crate::embedder::Embedder;
use crate::error::{Result, VisionError};
use crate::files;
use crate::geometry::{BoxF, FivePoints, Point};
use crate::landmarks::{Rect, ShapePredictor};
use crate::mask::MaskClassifier;
use crate::pose::{self, Pose};
use crate::runtime::{Backend, Model, Runtime, RuntimeConfig, RuntimeKind};
use crate::spoof::{self, BoxXYWH, SpoofCondition, SpoofVerdict};
use crate::{align, calibration};

/// Side of dlib's aligned face chip, the dlib embedder's input.
const EMBED_CHIP: u32 = 150;
/// Which five points SFace's chip is aligned on: YuNet's own (`false`), or
/// YuNet's with the eyes replaced by the centres of dlib's eye corners
/// (`true`). Equal on LFW within noise (docs/models.md); YuNet's need no
/// landmark stage.
const SFACE_REFINED_EYES: bool = false;
/// Whether SFace's embedding is the sum of the chip's and its mirror
/// image's (test-time augmentation): no measurable gain on LFW for twice
/// the inference (docs/models.md).
const SFACE_FLIP: bool = false;
/// Faces wider than this are downscaled before landmarking and alignment.
const MAX_ALIGN_FACE: f32 = 200.0;

/// The box dlib's shape predictor was trained on (its HOG detector's): a
/// square about as wide as YuNet's box, centred a little lower because YuNet's
/// box also covers the forehead. Fitted on the six faces of t1.jpg.
fn dlib_box(b: &BoxF) -> Rect {
    let side = b.width();
    let (cx, cy) = (b.center().0, b.center().1 + 0.065 * b.height());
    Rect {
        left: (cx - side / 2.0).round(),
        top: (cy - side / 2.0).round(),
        right: (cx + side / 2.0).round() - 1.0,
        bottom: (cy + side / 2.0).round() - 1.0,
    }
}

/// For a face wider than [`MAX_ALIGN_FACE`]: a downscaled copy of the region
/// around it, the region's top-left corner and the scale factor. For smaller
/// faces: no copy, offset 0 and factor 1.
fn face_region(image: &RgbImage, b: &BoxF) -> (Option<RgbImage>, (f32, f32), f32) {
    if b.width() <= MAX_ALIGN_FACE {
        return (None, (0.0, 0.0), 1.0);
    }
    let factor = MAX_ALIGN_FACE / b.width();
    let (cx, cy) = b.center();
    let half = b.width().max(b.height()) * 1.5;
    let (w, h) = image.dimensions();
    let x0 = (cx - half).max(0.0).floor() as u32;
    let y0 = (cy - half).max(0.0).floor() as u32;
    let x1 = ((cx + half).ceil() as u32).min(w);
    let y1 = ((cy + half).ceil() as u32).min(h);
    let view = image::imageops::crop_imm(
        image,
        x0,
        y0,
        x1.saturating_sub(x0).max(1),
        y1.saturating_sub(y0).max(1),
    );
    let (nw, nh) = (
        ((view.width() as f32 * factor).round() as u32).max(1),
        ((view.height() as f32 * factor).round() as u32).max(1),
    );
    // A very large face is block-averaged straight from the view first, so
    // no full-resolution copy of its region is made.
    let k = (view.width() / nw).min(view.height() / nh) / 2;
    let crop = if k >= 2 {
        crate::detect::box_shrink(&*view, k)
    } else {
        view.to_image()
    };
    let scaled = image::imageops::resize(&crop, nw, nh, image::imageops::FilterType::Triangle);
    (Some(scaled), (x0 as f32, y0 as f32), factor)
}

/// dlib's five points for one face, and the (possibly downscaled) region of
/// the image they refer to.
struct Aligned {
    region: Option<RgbImage>,
    offset: (f32, f32),
    factor: f32,
    /// Outer and inner corner of the image-right eye, of the image-left eye,
    /// then the nose base, in region pixels.
    shape: Vec<(f64, f64)>,
}

impl Aligned {
    fn to_image(&self, (x, y): (f64, f64)) -> Point {
        Point {
            x: x as f32 / self.factor + self.offset.0,
            y: y as f32 / self.factor + self.offset.1,
        }
    }

    /// The detector's landmarks with the eyes replaced by the centres of
    /// dlib's eye corners, which are more precise and follow rotation.
    fn refined_landmarks(&self, detected: &FivePoints) -> FivePoints {
        let [a, b, c, d, ..] = self.shape[..] else {
            return *detected;
        };
        let mid =
            |p: (f64, f64), q: (f64, f64)| self.to_image(((p.0 + q.0) / 2.0, (p.1 + q.1) / 2.0));
        FivePoints {
            left_eye: mid(c, d),
            right_eye: mid(a, b),
            ..*detected
        }
    }
}

/// Angle of the line from the left to the right eye, degrees, clockwise
/// positive (image y points down).
fn eye_line_degrees(l: &FivePoints) -> f32 {
    (l.right_eye.y - l.left_eye.y)
        .atan2(l.right_eye.x - l.left_eye.x)
        .to_degrees()
}

/// How to build an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model_dir: PathBuf,
    pub runtime: RuntimeKind,
    pub detector: DetectorOptions,
    /// The embedders to load, the engine's default (used by
    /// [`Engine::analyze`], [`Engine::embed`], [`Engine::model_version`])
    /// first. Must not be empty.
    pub embedders: Vec<Embedder>,
    /// Threads a network may use when it runs alone (see
    /// [`RuntimeConfig::lone_run_threads`]); 0: every core.
    pub lone_run_threads: usize,
    /// How the per-face networks batch concurrent requests' faces; `None`:
    /// the runtime's default ([`Batching::DEFAULT`], or [`Batching::GPU`]
    /// on CUDA).
    pub batching: Option<Batching>,
}

impl EngineOptions {
    /// Options loading dlib only, as before SFace existed; choose others
    /// with [`EngineOptions::with_embedders`].
    pub fn new(model_dir: impl Into<PathBuf>, runtime: RuntimeKind) -> Self {
        Self {
            model_dir: model_dir.into(),
            runtime,
            detector: DetectorOptions::default(),
            embedders: vec![Embedder::Dlib],
            lone_run_threads: 0,
            batching: None,
        }
    }

    /// The same options with another [`EngineOptions::batching`].
    pub fn with_batching(mut self, batching: Batching) -> Self {
        self.batching = Some(batching);
        self
    }

    /// The same options with another [`EngineOptions::lone_run_threads`].
    pub fn with_lone_run_threads(mut self, threads: usize) -> Self {
        self.lone_run_threads = threads;
        self
    }

    /// The same options loading `embedders`, the first being the default
    /// (e.g. `&[Embedder::Sface, Embedder::Dlib]`: SFace for new faces,
    /// dlib for groups created with it).
    pub fn with_embedders(mut self, embedders: &[Embedder]) -> Self {
        self.embedders = embedders.to_vec();
        self
    }
}

/// Which of the detected faces (largest first) an analysis covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceSelection {
    /// Faces analysed and returned.
    pub faces: usize,
    /// Of those, faces embedded (when embeddings are asked for).
    pub embeddings: usize,
}

impl FaceSelection {
    /// Every face, every embedding.
    pub const ALL: Self = Self {
        faces: usize::MAX,
        embeddings: usize::MAX,
    };
}

/// Which optional stages to run for each face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzeOptions {
    pub embedding: bool,
    pub orientation: bool,
    pub mask: bool,
    /// Liveness at the given sensitivity, or none.
    pub spoofing: Option<SpoofCondition>,
}

impl Default for AnalyzeOptions {
    /// The API's defaults: orientation and mask on, spoofing off, no embedding.
    fn default() -> Self {
        Self {
            embedding: false,
            orientation: true,
            mask: true,
            spoofing: None,
        }
    }
}

/// Everything the engine found out about one face.
#[derive(Debug, Clone, Serialize)]
pub struct FaceAnalysis {
    /// Box in pixels of the analysed image.
    pub bbox: BoxF,
    /// Landmarks in anatomical order (see [`FivePoints`]).
    pub landmarks: FivePoints,
    /// Detection confidence in [0, 1].
    pub confidence: f32,
    pub pose: Option<Pose>,
    pub mask: Option<bool>,
    pub spoof: Option<SpoofVerdict>,
    /// L2-normalised embedding.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

/// Where one analysis spent its time, stage by stage, summed over its
/// faces: for metrics and profiles (the stages a request did not ask for
/// stay zero).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// YuNet: boxes and five points.
    pub detect: Duration,
    /// dlib's shape predictor (refined landmarks, the dlib embedder's chip).
    pub landmarks: Duration,
    /// Alignment and the embedder.
    pub embed: Duration,
    /// Quality gate and MiniFASNet.
    pub liveness: Duration,
    /// The mask classifier.
    pub mask: Duration,
    /// Head pose from the landmarks.
    pub pose: Duration,
}

impl StageTimes {
    /// Each stage by name.
    pub fn by_stage(&self) -> [(&'static str, Duration); 6] {
        [
            ("detect", self.detect),
            ("landmarks", self.landmarks),
            ("embed", self.embed),
            ("liveness", self.liveness),
            ("mask", self.mask),
            ("pose", self.pose),
        ]
    }
}

/// Runs `f`, adding its duration to `total`.
fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    *total += started.elapsed();
    out
}

/// The loaded models; cheap to share (`Arc` it), safe across threads.
#[derive(Debug)]
pub struct Engine {
    runtime: Runtime,
    detector: Detector,
    shape_predictor: ShapePredictor,
    /// Loaded embedders, the default first.
    embedders: Vec<(Embedder, Model)>,
    pub(crate) spoof_v2: Model,
    pub(crate) spoof_v1se: Model,
    mask: MaskClassifier,
}

fn read_model(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VisionError::MissingModel(path.display().to_string()),
        _ => VisionError::Io(e),
    })
}

impl Engine {
    /// Loads the models `options` asks for from `options.model_dir` on the
    /// configured runtime.
    pub fn load(options: &EngineOptions) -> Result<Self> {
        let defaults = RuntimeConfig::for_model_dir(options.runtime, &options.model_dir);
        let runtime = Runtime::new(&RuntimeConfig {
            lone_run_threads: match options.lone_run_threads {
                0 => defaults.lone_run_threads,
                n => n,
            },
            ..defaults
        })?;
        let runtime = match options.batching {
            Some(batching) => runtime.with_batching(batching),
            None => runtime,
        };
        Self::load_with(
            runtime,
            &options.model_dir,
            options.detector.clone(),
            &options.embedders,
        )
    }

    /// Loads the models from `dir` on a given runtime, with dlib as the only
    /// embedder (see [`Engine::load_with`]).
    pub fn load_on(runtime: Runtime, dir: &Path, detector: DetectorOptions) -> Result<Self> {
        Self::load_with(runtime, dir, detector, &[Embedder::Dlib])
    }

    /// Loads the models from `dir` on a given runtime with the given
    /// embedders, the first being the default.
    pub fn load_with(
        runtime: Runtime,
        dir: &Path,
        detector: DetectorOptions,
        embedders: &[Embedder],
    ) -> Result<Self> {
        if embedders.is_empty() {
            return Err(VisionError::InvalidInput(
                "at least one embedder must be loaded".into(),
            ));
        }
        let detector = Detector::load(&runtime, &read_model(dir, files::DETECTOR)?, detector)?;
        let shape_predictor = ShapePredictor::from_bytes(&read_model(dir, files::LANDMARKS)?)
            .map_err(|e| VisionError::InvalidModel(format!("{}: {e}", files::LANDMARKS)))?;
        let mut loaded: Vec<(Embedder, Model)> = Vec::new();
        for &e in embedders {
            if loaded.iter().any(|(l, _)| *l == e) {
                continue;
            }
            let chip = match e {
                Embedder::Dlib => EMBED_CHIP,
                Embedder::Sface => align::ARCFACE_CHIP,
            } as usize;
            // The version stored with faces must name what is installed.
            crate::manifest::check_embedder(dir, e)?;
            let file = e.model_file();
            let model = runtime.load(file, &read_model(dir, file)?, [1, 3, chip, chip])?;
            loaded.push((e, model));
        }
        let side = spoof::INPUT_SIZE as usize;
        let spoof_v2 = runtime.load(
            files::SPOOF_V2,
            &read_model(dir, files::SPOOF_V2)?,
            [1, 3, side, side],
        )?;
        let spoof_v1se = runtime.load(
            files::SPOOF_V1SE,
            &read_model(dir, files::SPOOF_V1SE)?,
            [1, 3, side, side],
        )?;
        Ok(Self {
            runtime,
            detector,
            shape_predictor,
            embedders: loaded,
            spoof_v2,
            spoof_v1se,
            mask: MaskClassifier::embedded()
                .map_err(|e| VisionError::InvalidModel(format!("mask weights: {e}")))?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.runtime.backend()
    }

    /// Runs `f` (calls into this engine) as one request whose faces are
    /// batched with other requests' in `lane`, one per tenant (see
    /// [`crate::batch`]).
    pub fn serve<T>(&self, lane: u64, f: impl FnOnce() -> T) -> T {
        self.runtime.serve(lane, f)
    }

    /// Whether the per-face networks batch concurrent requests' faces.
    pub fn batches(&self) -> bool {
        self.spoof_v2.batches()
    }

    /// What the per-face networks' batchers have done: the embedders and
    /// both liveness models, summed.
    pub fn batch_stats(&self) -> BatchStats {
        self.embedders
            .iter()
            .map(|(_, m)| m)
            .chain([&self.spoof_v2, &self.spoof_v1se])
            .map(Model::batch_stats)
            .fold(BatchStats::default(), |a, b| BatchStats {
                batches: a.batches + b.batches,
                inputs: a.inputs + b.inputs,
                largest: a.largest.max(b.largest),
            })
    }

    /// Version of the default embedder; stored with every registered face.
    /// Equal to the installed manifest's (checked at load).
    pub fn model_version(&self) -> &'static str {
        self.default_embedder().version()
    }

    /// The default embedder (the first one loaded).
    pub fn default_embedder(&self) -> Embedder {
        self.embedders[0].0
    }

    /// Every loaded embedder, the default first.
    pub fn embedders(&self) -> Vec<Embedder> {
        self.embedders.iter().map(|(e, _)| *e).collect()
    }

    fn embedder_model(&self, embedder: Embedder) -> Result<&Model> {
        self.embedders
            .iter()
            .find(|(e, _)| *e == embedder)
            .map(|(_, m)| m)
            .ok_or_else(|| VisionError::InvalidInput(format!("embedder {embedder} is not loaded")))
    }

    /// Detects faces (largest first) and runs the requested stages on each;
    /// embeddings come from the default embedder.
    pub fn analyze(&self, image: &RgbImage, options: &AnalyzeOptions) -> Result<Vec<FaceAnalysis>> {
        self.analyze_with(image, options, self.default_embedder())
    }

    /// [`Engine::analyze`] with embeddings from `embedder`, which must be
    /// loaded.
    pub fn analyze_with(
        &self,
        image: &RgbImage,
        options: &AnalyzeOptions,
        embedder: Embedder,
    ) -> Result<Vec<FaceAnalysis>> {
        Ok(self.analyze_timed(image, options, embedder)?.0)
    }

    /// [`Engine::analyze_with`], and where the time went.
    pub fn analyze_timed(
        &self,
        image: &RgbImage,
        options: &AnalyzeOptions,
        embedder: Embedder,
    ) -> Result<(Vec<FaceAnalysis>, StageTimes)> {
        self.analyze_selected(image, options, embedder, FaceSelection::ALL)
    }

    /// [`Engine::analyze_timed`] for the faces a caller will use: the
    /// `selection.faces` largest, embeddings for the `selection.embeddings`
    /// largest of those (the others get `embedding: None`). A search only
    /// needs the largest face; a registration embeds only what it stores.
    pub fn analyze_selected(
        &self,
        image: &RgbImage,
        options: &AnalyzeOptions,
        embedder: Embedder,
        selection: FaceSelection,
    ) -> Result<(Vec<FaceAnalysis>, StageTimes)> {
        if options.embedding {
            self.embedder_model(embedder)?;
        }
        let mut times = StageTimes::default();
        let detections = timed(&mut times.detect, || self.detector.detect(image))?;
        let faces = detections
            .into_iter()
            .take(selection.faces)
            .enumerate()
            .map(|(i, d)| {
                let options = AnalyzeOptions {
                    embedding: options.embedding && i < selection.embeddings,
                    ..*options
                };
                self.analyze_face(image, d, &options, embedder, &mut times)
            })
            .collect::<Result<_>>()?;
        Ok((faces, times))
    }

    /// Detection only: boxes, landmarks and confidence, largest first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        self.detector.detect(image)
    }

    fn analyze_face(
        &self,
        image: &RgbImage,
        d: Detection,
        options: &AnalyzeOptions,
        embedder: Embedder,
        times: &mut StageTimes,
    ) -> Result<FaceAnalysis> {
        let (aligned, landmarks) = timed(&mut times.landmarks, || {
            let aligned = self.align(image, &d);
            let landmarks = aligned.refined_landmarks(&d.landmarks);
            (aligned, landmarks)
        });
        let embedding = if options.embedding {
            Some(timed(&mut times.embed, || {
                self.embed_aligned(embedder, &aligned, image, &d)
            })?)
        } else {
            None
        };
        let spoof = match options.spoofing {
            Some(condition) => Some(timed(&mut times.liveness, || {
                self.liveness(image, &d.bbox, &d.landmarks, condition)
            })?),
            None => None,
        };
        let pose = if options.orientation {
            // YuNet's landmarks give a self-consistent 3-D fit for yaw and
            // pitch but are biased towards upright faces; dlib's cascade
            // follows in-plane rotation, so roll is its eye line.
            timed(&mut times.pose, || pose::estimate(&d.landmarks)).map(|p| Pose {
                roll: eye_line_degrees(&landmarks),
                ..p
            })
        } else {
            None
        };
        let mask = if options.mask {
            let verdict = timed(&mut times.mask, || self.mask.predict(image, &d))
                .map_err(|e| VisionError::InvalidInput(format!("mask: {e}")))?;
            Some(verdict.is_masked())
        } else {
            None
        };
        Ok(FaceAnalysis {
            pose,
            mask,
            spoof,
            embedding,
            bbox: d.bbox,
            landmarks,
            confidence: d.score,
        })
    }

    /// Runs dlib's shape predictor on the face, on a downscaled region when
    /// the face is large (dlib shrinks big faces with an image pyramid
    /// before cutting the 150 px chip; sampling them directly would alias).
    fn align(&self, image: &RgbImage, d: &Detection) -> Aligned {
        let (region, offset, factor) = face_region(image, &d.bbox);
        let local = BoxF {
            x0: (d.bbox.x0 - offset.0) * factor,
            y0: (d.bbox.y0 - offset.1) * factor,
            x1: (d.bbox.x1 - offset.0) * factor,
            y1: (d.bbox.y1 - offset.1) * factor,
        };
        let shape = self
            .shape_predictor
            .predict_f64(region.as_ref().unwrap_or(image), dlib_box(&local));
        Aligned {
            region,
            offset,
            factor,
            shape,
        }
    }

    /// dlib's five points for a detected face (outer and inner corner of the
    /// image-right eye, of the image-left eye, nose base), image pixels.
    pub fn dlib_landmarks(&self, image: &RgbImage, d: &Detection) -> Vec<Point> {
        let aligned = self.align(image, d);
        aligned.shape.iter().map(|&p| aligned.to_image(p)).collect()
    }

    /// L2-normalised embedding of a detected face by the default embedder.
    pub fn embed(&self, image: &RgbImage, d: &Detection) -> Result<Vec<f32>> {
        self.embed_with(image, d, self.default_embedder())
    }

    /// L2-normalised embedding of a detected face by `embedder`, which must
    /// be loaded.
    pub fn embed_with(
        &self,
        image: &RgbImage,
        d: &Detection,
        embedder: Embedder,
    ) -> Result<Vec<f32>> {
        if embedder == Embedder::Sface && !SFACE_REFINED_EYES {
            // SFace on YuNet's points needs no landmark stage.
            return self.embed_sface_points(image, &d.landmarks, false, SFACE_FLIP);
        }
        self.embed_aligned(embedder, &self.align(image, d), image, d)
    }

    fn embed_aligned(
        &self,
        embedder: Embedder,
        aligned: &Aligned,
        image: &RgbImage,
        d: &Detection,
    ) -> Result<Vec<f32>> {
        match embedder {
            Embedder::Dlib => self.embed_dlib(aligned, image),
            Embedder::Sface => {
                let points = if SFACE_REFINED_EYES {
                    aligned.refined_landmarks(&d.landmarks)
                } else {
                    d.landmarks
                };
                self.embed_sface_points(image, &points, false, SFACE_FLIP)
            }
        }
    }

    /// SFace embedding of the face whose five points (anatomical order, see
    /// [`FivePoints`]) are `points`: the ArcFace-aligned 112×112 chip, fed
    /// as RGB (the network's order) or, with `bgr`, BGR, and with `flip` the sum with
    /// its mirror image's embedding; L2-normalised. For evaluating the
    /// pipeline's choices (examples/lfw_eval.rs); [`Engine::embed_with`] is
    /// the supported entry point.
    #[doc(hidden)]
    pub fn embed_sface_points(
        &self,
        image: &RgbImage,
        points: &FivePoints,
        bgr: bool,
        flip: bool,
    ) -> Result<Vec<f32>> {
        let model = self.embedder_model(Embedder::Sface)?;
        let pts = points.as_array().map(|p| (f64::from(p.x), f64::from(p.y)));
        if pts.iter().any(|p| !(p.0.is_finite() && p.1.is_finite())) {
            return Err(VisionError::InvalidInput("non-finite landmark".into()));
        }
        let chip = align::arcface_chip(image, &pts);
        let run = |chip: &RgbImage| -> Result<Vec<f32>> {
            let input = if bgr {
                align::bgr_nchw(chip)
            } else {
                align::rgb_nchw(chip)
            };
            let out = model.run(&input)?;
            out.into_iter()
                .next()
                .map(|t| t.data)
                .ok_or_else(|| VisionError::InvalidModel("SFace has no output".into()))
        };
        let mut e = run(&chip)?;
        if flip {
            let mirrored = image::imageops::flip_horizontal(&chip);
            for (a, b) in e.iter_mut().zip(run(&mirrored)?) {
                *a += b;
            }
        }
        Ok(calibration::l2_normalize(&e))
    }

    fn embed_dlib(&self, aligned: &Aligned, image: &RgbImage) -> Result<Vec<f32>> {
        // dlib cuts its chip from landmarks rounded to whole pixels.
        let rounded: Vec<(f32, f32)> = aligned
            .shape
            .iter()
            .map(|&(x, y)| ((x + 0.5).floor() as f32, (y + 0.5).floor() as f32))
            .collect();
        let chip = align::face_chip(aligned.region.as_ref().unwrap_or(image), &rounded)
            .map_err(|e| VisionError::InvalidInput(format!("alignment: {e}")))?;
        let out = self
            .embedder_model(Embedder::Dlib)?
            .run(&align::rgb_nchw(&chip))?;
        let raw = out
            .first()
            .ok_or_else(|| VisionError::InvalidModel("embedder has no output".into()))?;
        Ok(calibration::l2_normalize(&raw.data))
    }

    /// Fused MiniFASNet V2 + V1SE on crops around `face` taken as is: no
    /// quality gate and no conversion to upstream's box. For a detected
    /// face use [`Engine::liveness`], which does both (docs/models.md).
    pub fn spoof(
        &self,
        image: &RgbImage,
        face: &BoxF,
        condition: SpoofCondition,
    ) -> Result<SpoofVerdict> {
        let mut real = 0.0;
        for (model, scale) in [(&self.spoof_v2, 2.7), (&self.spoof_v1se, 4.0)] {
            let xywh = BoxXYWH {
                x: face.x0,
                y: face.y0,
                w: face.width(),
                h: face.height(),
            };
            let input = spoof::liveness_crop(image, xywh, scale, spoof::INPUT_SIZE);
            let probs = model.run(&input)?;
            let p = probs
                .first()
                .and_then(|t| t.data.get(1))
                .ok_or_else(|| VisionError::InvalidModel("liveness output".into()))?;
            real += p / 2.0;
        }
        Ok(SpoofVerdict::new(real, condition))
    }

    /// Liveness of an already aligned, tight face crop (the API's
    /// `aligned: true`): the whole crop is the face box.
    pub fn spoof_aligned(
        &self,
        crop: &RgbImage,
        condition: SpoofCondition,
    ) -> Result<SpoofVerdict> {
        let (w, h) = crop.dimensions();
        let face = BoxF {
            x0: 0.0,
            y0: 0.0,
            x1: w as f32,
            y1: h as f32,
        };
        self.spoof(crop, &face, condition)
    }
}
