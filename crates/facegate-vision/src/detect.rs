//! Face detection with YuNet (2023mar, anchor-free, 5 landmarks).
//!
//! The image is scaled to fit 640×640 (never enlarged) and padded at the
//! bottom/right with zeros, as OpenCV's `FaceDetectorYN` pads. The published
//! graph declares a fixed 640×640 input, but its operations are all
//! convolutional and its reshapes are `[1, -1, k]`, so the same weights run
//! on a smaller square canvas (256, 384 or 512) once the declared shapes
//! are rewritten ([`graph_for_canvas`]): a small photo no longer pays for
//! 640×640.
//! Results are mapped back to the original image's pixels.

use std::sync::{Arc, Mutex};

use facegate_onnx::proto::{Dimension, DimensionValue};
use facegate_onnx::Message;
use image::imageops::{self, FilterType};
use image::RgbImage;

use crate::error::{Result, VisionError};
use crate::geometry::{BoxF, FivePoints, Point};
use crate::runtime::{Model, Runtime};

/// The largest canvas side, the published graph's.
pub const YUNET_INPUT: usize = 640;
const STRIDES: [usize; 3] = [8, 16, 32];
/// The square canvases detection runs on. Each is a model of its own with
/// its own runtime memory (about 25 MB per canvas and session with ONNX
/// Runtime), so there are few of them: per-image sizes grew the process by
/// 470 MB over 42 sizes. Multiples of 32, the coarsest stride, as the
/// graph's upsampling joins need.
const CANVAS_SIDES: [usize; 4] = [256, 384, 512, YUNET_INPUT];

/// One detected face, in pixels of the input image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    pub landmarks: FivePoints,
    /// Detection confidence in [0, 1].
    pub score: f32,
}

/// Tunables of the detector.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub score_threshold: f32,
    pub nms_iou: f32,
    /// Faces whose shorter box side is below this many pixels are dropped.
    pub min_face_px: f32,
    /// `None`: every image on the full 640×640 canvas. `Some(m)`: on the
    /// smallest of the canvases 256, 384, 512 and 640 square that holds
    /// the fitted image plus `m` zero pixels right and below. YuNet's deep
    /// layers see about 128 px into the padding, so with `m` = 128 the
    /// detections match the full canvas's (docs/benchmarks.md, "Detection
    /// canvas").
    pub canvas_margin: Option<usize>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.6,
            nms_iou: 0.3,
            min_face_px: 20.0,
            canvas_margin: Some(128),
        }
    }
}

/// A canvas size, (width, height).
type Canvas = (usize, usize);

/// YuNet face detector.
#[derive(Debug, Clone)]
pub struct Detector {
    runtime: Runtime,
    /// The published graph, rewritten for each canvas size on first use.
    source: Arc<[u8]>,
    /// The canvases loaded so far.
    canvases: Arc<Mutex<Vec<(Canvas, Model)>>>,
    /// Output positions of cls/obj/bbox/kps for each stride.
    outputs: [[usize; 4]; 3],
    options: DetectorOptions,
}

impl Detector {
    pub fn load(runtime: &Runtime, onnx: &[u8], options: DetectorOptions) -> Result<Self> {
        let full = (YUNET_INPUT, YUNET_INPUT);
        let model = runtime.load("yunet", onnx, [1, 3, full.1, full.0])?;
        let mut outputs = [[0; 4]; 3];
        for (slot, stride) in outputs.iter_mut().zip(STRIDES) {
            for (k, kind) in ["cls", "obj", "bbox", "kps"].iter().enumerate() {
                slot[k] = model.output_index(&format!("{kind}_{stride}"))?;
            }
        }
        Ok(Self {
            runtime: runtime.clone(),
            source: onnx.into(),
            canvases: Arc::new(Mutex::new(vec![(full, model)])),
            outputs,
            options,
        })
    }

    /// The canvas an image fitted to `w`×`h` runs on.
    fn canvas_for(&self, w: usize, h: usize) -> Canvas {
        match self.options.canvas_margin {
            None => (YUNET_INPUT, YUNET_INPUT),
            Some(margin) => {
                let need = w.max(h) + margin;
                let side = CANVAS_SIDES
                    .into_iter()
                    .find(|&side| side >= need)
                    .unwrap_or(YUNET_INPUT);
                (side, side)
            }
        }
    }

    /// The model of a canvas size, loaded on first use and kept (there are
    /// at most [`CANVAS_SIDES`]`.len()`).
    fn model_for(&self, canvas: Canvas) -> Result<Model> {
        let lock_err = || VisionError::InvalidModel("yunet canvas cache poisoned".into());
        {
            let loaded = self.canvases.lock().map_err(|_| lock_err())?;
            if let Some((_, model)) = loaded.iter().find(|(size, _)| *size == canvas) {
                return Ok(model.clone());
            }
        }
        // Loaded outside the lock: other sizes stay usable meanwhile (two
        // requests may both load a new size; one copy is kept).
        let (w, h) = canvas;
        let graph = graph_for_canvas(&self.source, w, h)?;
        let model = self.runtime.load("yunet", &graph, [1, 3, h, w])?;
        let mut loaded = self.canvases.lock().map_err(|_| lock_err())?;
        if !loaded.iter().any(|(size, _)| *size == canvas) {
            loaded.push((canvas, model.clone()));
        }
        Ok(model)
    }

    /// Detects faces, ranked as every layer ranks them
    /// ([`facegate_core::rank_faces`]: largest first, at most
    /// [`facegate_core::MAX_FACES`]).
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return Err(VisionError::InvalidInput("empty image".into()));
        }
        // Faces far larger than YuNet's training range (~10–300 px) are missed
        // at full size, so a second, coarser pass runs when the first finds none.
        let fit = (YUNET_INPUT as f32 / w.max(h) as f32).min(1.0);
        let mut faces = self.detect_at_scale(image, fit)?;
        if faces.is_empty() && w.max(h) as f32 * fit > 320.0 {
            faces = self.detect_at_scale(image, fit * 0.5)?;
        }
        faces.retain(|f| f.bbox.width().min(f.bbox.height()) >= self.options.min_face_px);
        facegate_core::rank_faces(&mut faces, |d| d.bbox);
        Ok(faces)
    }

    fn detect_at_scale(&self, image: &RgbImage, scale: f32) -> Result<Vec<Detection>> {
        let (w, h) = image.dimensions();
        let sw = ((w as f32 * scale).round() as u32).clamp(1, YUNET_INPUT as u32);
        let sh = ((h as f32 * scale).round() as u32).clamp(1, YUNET_INPUT as u32);
        let resized;
        let src = if (sw, sh) == (w, h) {
            image
        } else {
            // A large photo is first averaged over k x k blocks: the
            // filtered resize keeps a float copy of width x target height,
            // 48 MB for a 40-megapixel image, where this pass needs only
            // its (k^2 times smaller) output.
            let k = (w / sw).min(h / sh) / 2;
            let shrunk;
            let from = if k >= 2 {
                shrunk = box_shrink(image, k);
                &shrunk
            } else {
                image
            };
            resized = imageops::resize(from, sw, sh, FilterType::Triangle);
            &resized
        };
        let (cw, ch) = self.canvas_for(sw as usize, sh as usize);
        let input = bgr_planar_padded(src, cw, ch);
        let out = self.model_for((cw, ch))?.run(&input)?;
        // Exact scale factors per axis after rounding the resized size.
        let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
        let mut candidates = Vec::new();
        for (slot, stride) in self.outputs.iter().zip(STRIDES) {
            let [cls, obj, bbox, kps] = slot.map(|i| &out[i].data);
            let cols = cw / stride;
            let n = cols * (ch / stride);
            if cls.len() != n || obj.len() != n || bbox.len() != 4 * n || kps.len() != 10 * n {
                return Err(VisionError::InvalidModel("yunet output shape".into()));
            }
            let s = stride as f32;
            for i in 0..n {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score < self.options.score_threshold {
                    continue;
                }
                let (row, col) = ((i / cols) as f32, (i % cols) as f32);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                let k = &kps[10 * i..10 * i + 10];
                let pt = |j: usize| Point {
                    x: (col + k[2 * j]) * s * fx,
                    y: (row + k[2 * j + 1]) * s * fy,
                };
                candidates.push(Detection {
                    bbox: BoxF {
                        x0: (cx - bw / 2.0) * fx,
                        y0: (cy - bh / 2.0) * fy,
                        x1: (cx + bw / 2.0) * fx,
                        y1: (cy + bh / 2.0) * fy,
                    }
                    .clamp_to(w, h),
                    // YuNet's order is anatomical: subject's right eye first.
                    landmarks: FivePoints {
                        left_eye: pt(0),
                        right_eye: pt(1),
                        nose: pt(2),
                        left_lip: pt(3),
                        right_lip: pt(4),
                    },
                    score,
                });
            }
        }
        Ok(nms(candidates, self.options.nms_iou))
    }
}

/// Greedy non-maximum suppression by score.
fn nms(mut candidates: Vec<Detection>, iou: f32) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.bbox.iou(&c.bbox) <= iou) {
            kept.push(c);
        }
    }
    kept
}

/// YuNet's graph declaring a `width`×`height` input: the input's shape
/// rewritten, and the intermediate and output shapes the export recorded for
/// 640×640 dropped (runtimes infer them; tract would otherwise hold the
/// model to them).
pub fn graph_for_canvas(onnx: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let invalid = |what: &str| VisionError::InvalidModel(format!("yunet: {what}"));
    let mut model = facegate_onnx::decode(onnx).map_err(|e| invalid(&e.to_string()))?;
    let graph = model.graph.as_mut().ok_or_else(|| invalid("no graph"))?;
    let shape = graph
        .input
        .first_mut()
        .and_then(|i| i.r#type.as_mut())
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .ok_or_else(|| invalid("no input shape"))?;
    if shape.dim.len() != 4 {
        return Err(invalid("input is not NCHW"));
    }
    for (axis, size) in [(2, height), (3, width)] {
        shape.dim[axis] = Dimension {
            value: Some(DimensionValue::DimValue(size as i64)),
        };
    }
    graph.value_info.clear();
    for output in &mut graph.output {
        if let Some(t) = output.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()) {
            t.shape = None;
        }
    }
    Ok(model.encode_to_vec())
}

/// NCHW BGR float 0..255, zero-padded to `width`×`height` at the
/// bottom/right.
fn bgr_planar_padded(img: &RgbImage, width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut out = vec![0.0f32; 3 * plane];
    for (x, y, p) in img.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x < width && y < height {
            let i = y * width + x;
            out[i] = p[2] as f32;
            out[plane + i] = p[1] as f32;
            out[2 * plane + i] = p[0] as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x0: f32, score: f32) -> Detection {
        Detection {
            bbox: BoxF {
                x0,
                y0: 0.0,
                x1: x0 + 10.0,
                y1: 10.0,
            },
            landmarks: FivePoints::default(),
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(vec![det(0.0, 0.7), det(1.0, 0.9), det(50.0, 0.8)], 0.3);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn padding_puts_bgr_planes_at_the_top_left() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([10, 20, 30]));
        let t = bgr_planar_padded(&img, 4, 4);
        assert_eq!(t.len(), 48);
        assert_eq!((t[0], t[16], t[32]), (30.0, 20.0, 10.0));
        assert_eq!(t[1], 30.0);
        assert_eq!(t[2], 0.0);
        assert_eq!(t[4], 0.0);
        // A canvas wider than tall: rows are `width` long.
        let img = RgbImage::from_pixel(1, 2, image::Rgb([10, 20, 30]));
        let t = bgr_planar_padded(&img, 3, 2);
        assert_eq!(t.len(), 18);
        assert_eq!((t[0], t[3], t[1], t[6]), (30.0, 30.0, 0.0, 20.0));
    }
}

/// `image` averaged over `k` x `k` blocks (the last partial blocks
/// dropped), one row of sums at a time: a cheap anti-aliasing first step
/// before a filtered resize of a large image or view, which would otherwise
/// keep a float copy at full width.
pub(crate) fn box_shrink<I>(image: &I, k: u32) -> RgbImage
where
    I: image::GenericImageView<Pixel = image::Rgb<u8>>,
{
    let (w, h) = (image.width() / k, image.height() / k);
    let mut out = RgbImage::new(w.max(1), h.max(1));
    let mut sums = vec![0u32; 3 * w as usize];
    let area = k * k;
    for oy in 0..h {
        sums.fill(0);
        for y in oy * k..(oy + 1) * k {
            for (ox, sum) in sums.chunks_exact_mut(3).enumerate() {
                for x in ox as u32 * k..(ox as u32 + 1) * k {
                    let p = image.get_pixel(x, y).0;
                    sum[0] += u32::from(p[0]);
                    sum[1] += u32::from(p[1]);
                    sum[2] += u32::from(p[2]);
                }
            }
        }
        for (ox, sum) in sums.chunks_exact(3).enumerate() {
            let px = [0, 1, 2].map(|c| ((sum[c] + area / 2) / area) as u8);
            out.put_pixel(ox as u32, oy, image::Rgb(px));
        }
    }
    out
}

#[cfg(test)]
mod box_shrink_tests {
    use super::*;

    #[test]
    fn averages_each_block_and_drops_partial_ones() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
        let out = box_shrink(&img, 2);
        assert_eq!(out.dimensions(), (2, 2));
        // Block (0,0): x 0,10,0,10 -> 5; y 0,0,10,10 -> 5.
        assert_eq!(out.get_pixel(0, 0).0, [5, 5, 7]);
        assert_eq!(out.get_pixel(1, 1).0, [25, 25, 7]);
    }
}
