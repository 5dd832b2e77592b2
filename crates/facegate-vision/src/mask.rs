//! Face-mask classification: is the detected face wearing a mask?
//!
//! No public mask model fits facegate (licence, size, runtime), so this is a
//! small model of our own, trained by `examples/train_mask.rs`:
//!
//! 1. the face is aligned from its five landmarks onto the ArcFace 5-point
//!    template scaled to [`CROP_SIZE`]² (least-squares similarity, bilinear
//!    sampling, out-of-image pixels clamped to the edge);
//! 2. [`features`] describes the crop with a contrast-normalised grey
//!    thumbnail (the shape of mouth and nostrils, or their absence) and
//!    per-cell colour relative to the forehead (a mask differs from skin).
//!    Gradient-orientation histograms were tried and dropped: they raised
//!    false positives on turned heads in real photos;
//! 3. a one-hidden-layer MLP (or logistic regression when the hidden layer is
//!    empty) maps the standardised features to a probability.
//!
//! The weights ship inside the binary (`mask_weights.bin`, format described
//! at [`MaskWeights::from_bytes`]). A prediction costs a few microseconds.

use image::{Rgb, RgbImage};

use crate::detect::Detection;
use crate::error::VisionError;
use crate::geometry::{FivePoints, Point};

/// Side of the aligned crop the features are computed on.
pub const CROP_SIZE: u32 = 32;
/// Default decision threshold on the mask probability; the classes were
/// weighted to balance in training, so 0.5 is the equal-error point.
pub const MASK_THRESHOLD: f32 = 0.5;
/// Version of the weight format and of the feature layout it pairs with.
pub const WEIGHTS_FORMAT_VERSION: u32 = 1;

/// ArcFace 5-point template in a 112×112 frame.
const TEMPLATE_112: [(f32, f32); 5] = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
];

const MAGIC: &[u8; 8] = b"FGMASK\0\0";
/// Magic plus version, crop size, feature count and hidden units.
const HEADER_LEN: usize = 8 + 4 * 4;

// Feature layout; the weight file must agree with it.
const THUMB: usize = 16;
const COLOR_GRID: usize = 4;
const S: usize = CROP_SIZE as usize;
/// Length of the vector [`features`] returns.
pub const FEATURE_LEN: usize = THUMB * THUMB + COLOR_GRID * COLOR_GRID * 3 + 3;

/// The weights compiled into facegate.
static EMBEDDED: &[u8] = include_bytes!("mask_weights.bin");

/// Why mask weights or inputs were rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    #[error("mask weights: not a facegate mask model (bad magic)")]
    BadMagic,
    #[error("mask weights: unsupported format version {0} (expected {WEIGHTS_FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("mask weights: expected {expected} bytes, got {actual}")]
    Length { expected: usize, actual: usize },
    #[error("mask weights: {0}")]
    Shape(String),
    #[error("mask weights: checksum mismatch")]
    Checksum,
    #[error("mask weights: non-finite value")]
    NonFinite,
    #[error("mask input: {0}")]
    InvalidInput(String),
}

impl From<MaskError> for VisionError {
    fn from(e: MaskError) -> Self {
        match e {
            MaskError::InvalidInput(m) => VisionError::InvalidInput(m),
            other => VisionError::InvalidModel(other.to_string()),
        }
    }
}

/// Trained parameters: standardisation, then an MLP with `hidden` ReLU units
/// (or logistic regression when `hidden` is 0).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskWeights {
    /// Probability at or above which a face counts as masked.
    pub threshold: f32,
    /// Per-feature mean subtracted before the model.
    pub mean: Vec<f32>,
    /// Per-feature 1/std multiplied after subtracting the mean.
    pub inv_std: Vec<f32>,
    /// Hidden units; 0 means a linear model.
    pub hidden: usize,
    /// Hidden-layer weights, row-major `hidden × FEATURE_LEN` (empty if linear).
    pub w1: Vec<f32>,
    /// Hidden-layer biases (empty if linear).
    pub b1: Vec<f32>,
    /// Output weights: `hidden` values, or `FEATURE_LEN` if linear.
    pub w2: Vec<f32>,
    /// Output bias (a logit).
    pub b2: f32,
}

impl MaskWeights {
    /// Parses the binary weight format, all little-endian:
    /// `b"FGMASK\0\0"`, u32 version, u32 crop size, u32 feature count,
    /// u32 hidden units, f32 threshold, f32 arrays mean, inv_std, w1, b1, w2,
    /// f32 b2, then a u32 FNV-1a checksum of everything before it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MaskError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(MaskError::BadMagic);
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let version = u32_at(8);
        if version != WEIGHTS_FORMAT_VERSION {
            return Err(MaskError::UnsupportedVersion(version));
        }
        let (crop, n, hidden) = (u32_at(12), u32_at(16) as usize, u32_at(20) as usize);
        if crop != CROP_SIZE || n != FEATURE_LEN {
            return Err(MaskError::Shape(format!(
                "crop {crop} / {n} features, this build computes {CROP_SIZE} / {FEATURE_LEN}"
            )));
        }
        // Bounding `hidden` keeps the size arithmetic far from overflow.
        if hidden > 4096 {
            return Err(MaskError::Shape(format!("{hidden} hidden units")));
        }
        let floats = Self::float_count(hidden);
        let expected = HEADER_LEN + 4 * floats + 4;
        if bytes.len() != expected {
            return Err(MaskError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let body = &bytes[..expected - 4];
        if fnv1a32(body) != u32_at(expected - 4) {
            return Err(MaskError::Checksum);
        }
        let values: Vec<f32> = body[HEADER_LEN..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(MaskError::NonFinite);
        }
        let mut rest = &values[..];
        let mut take = |k: usize| {
            let (head, tail) = rest.split_at(k);
            rest = tail;
            head.to_vec()
        };
        let threshold = take(1)[0];
        let mean = take(n);
        let inv_std = take(n);
        let (w1, b1, w2) = if hidden == 0 {
            (Vec::new(), Vec::new(), take(n))
        } else {
            (take(hidden * n), take(hidden), take(hidden))
        };
        let b2 = take(1)[0];
        if !(0.0..=1.0).contains(&threshold) {
            return Err(MaskError::Shape(format!("threshold {threshold}")));
        }
        Ok(Self {
            threshold,
            mean,
            inv_std,
            hidden,
            w1,
            b1,
            w2,
            b2,
        })
    }

    /// Serialises to the format [`Self::from_bytes`] reads.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MaskError> {
        let n = FEATURE_LEN;
        let (w1_len, b1_len, w2_len) = if self.hidden == 0 {
            (0, 0, n)
        } else {
            (self.hidden * n, self.hidden, self.hidden)
        };
        if self.mean.len() != n
            || self.inv_std.len() != n
            || self.w1.len() != w1_len
            || self.b1.len() != b1_len
            || self.w2.len() != w2_len
        {
            return Err(MaskError::Shape("array lengths do not match hidden".into()));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * Self::float_count(self.hidden) + 4);
        out.extend_from_slice(MAGIC);
        for v in [
            WEIGHTS_FORMAT_VERSION,
            CROP_SIZE,
            n as u32,
            self.hidden as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let arrays: [&[f32]; 7] = [
            &[self.threshold],
            &self.mean,
            &self.inv_std,
            &self.w1,
            &self.b1,
            &self.w2,
            &[self.b2],
        ];
        for v in arrays.iter().flat_map(|a| a.iter()) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let sum = fnv1a32(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Floats after the header, the threshold included.
    fn float_count(hidden: usize) -> usize {
        let n = FEATURE_LEN;
        let model = if hidden == 0 {
            n + 1
        } else {
            hidden * n + hidden + hidden + 1
        };
        1 + 2 * n + model
    }

    /// The model's logit for a raw (unstandardised) feature vector.
    pub fn logit(&self, features: &[f32]) -> f32 {
        let z = features
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((f, m), s)| (f - m) * s);
        if self.hidden == 0 {
            return z.zip(&self.w2).map(|(z, w)| z * w).sum::<f32>() + self.b2;
        }
        let z: Vec<f32> = z.collect();
        let mut out = self.b2;
        for ((row, b), w) in self
            .w1
            .chunks_exact(FEATURE_LEN)
            .zip(&self.b1)
            .zip(&self.w2)
        {
            let a = row.iter().zip(&z).map(|(w, z)| w * z).sum::<f32>() + b;
            out += a.max(0.0) * w;
        }
        out
    }
}

/// A mask decision for one face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskPrediction {
    /// Probability that the face wears a mask, in [0, 1].
    pub probability: f32,
    /// The classifier's threshold (see [`MASK_THRESHOLD`]).
    pub threshold: f32,
}

impl MaskPrediction {
    /// Whether the probability reaches the threshold.
    pub fn is_masked(&self) -> bool {
        self.probability >= self.threshold
    }
}

/// The mask classifier; cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct MaskClassifier {
    weights: MaskWeights,
}

impl MaskClassifier {
    /// The classifier with the weights compiled into facegate.
    pub fn embedded() -> Result<Self, MaskError> {
        Self::from_bytes(EMBEDDED)
    }

    /// A classifier from weights in the binary format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MaskError> {
        Ok(Self::new(MaskWeights::from_bytes(bytes)?))
    }

    /// A classifier from already parsed weights.
    pub fn new(weights: MaskWeights) -> Self {
        Self { weights }
    }

    /// The parameters in use.
    pub fn weights(&self) -> &MaskWeights {
        &self.weights
    }

    /// Mask probability of a face detected in `image`.
    pub fn predict(&self, image: &RgbImage, face: &Detection) -> Result<MaskPrediction, MaskError> {
        let crop = aligned_crop(image, &face.landmarks, CROP_SIZE)?;
        self.predict_crop(&crop)
    }

    /// Mask probability of an already aligned [`CROP_SIZE`]² crop.
    pub fn predict_crop(&self, crop: &RgbImage) -> Result<MaskPrediction, MaskError> {
        let f = features(crop)?;
        Ok(MaskPrediction {
            probability: sigmoid(self.weights.logit(&f)),
            threshold: self.weights.threshold,
        })
    }
}

/// Logistic function, saturating instead of overflowing.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-40.0, 40.0)).exp())
}

/// Warps the face onto the ArcFace template scaled to `size`×`size`.
///
/// The similarity (rotation, uniform scale, shift) is the least-squares fit
/// from the template to the landmarks, so one misplaced point (common on
/// masked mouths) only shifts the crop a little. Pixels outside the image take
/// the nearest edge pixel.
pub fn aligned_crop(
    image: &RgbImage,
    landmarks: &FivePoints,
    size: u32,
) -> Result<RgbImage, MaskError> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(MaskError::InvalidInput("empty image".into()));
    }
    if size == 0 || size > 1024 {
        return Err(MaskError::InvalidInput(format!("crop size {size}")));
    }
    let pts = landmarks.as_array();
    if pts.iter().any(|p| !p.x.is_finite() || !p.y.is_finite()) {
        return Err(MaskError::InvalidInput("non-finite landmark".into()));
    }
    let k = 112.0 / size as f32;
    let tpl = TEMPLATE_112.map(|(x, y)| Point { x, y });
    let [a, b, tx, ty] = similarity_fit(&tpl, &pts);
    let mut crop = RgbImage::new(size, size);
    for (cx, cy, px) in crop.enumerate_pixels_mut() {
        // Pixel centres: crop pixel (cx, cy) covers [cx, cx+1) in crop units.
        let u = (cx as f32 + 0.5) * k - 0.5;
        let v = (cy as f32 + 0.5) * k - 0.5;
        let x = a * u - b * v + tx;
        let y = b * u + a * v + ty;
        *px = bilinear(image, x, y);
    }
    Ok(crop)
}

/// Least-squares similarity `[a, b, tx, ty]` mapping `src` onto `dst`:
/// `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty`.
fn similarity_fit(src: &[Point; 5], dst: &[Point; 5]) -> [f32; 4] {
    let mean = |p: &[Point; 5]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + q.x, y + q.y));
        (sx / 5.0, sy / 5.0)
    };
    let (sx, sy) = mean(src);
    let (dx, dy) = mean(dst);
    let (mut num_a, mut num_b, mut den) = (0.0f32, 0.0f32, 0.0f32);
    for (s, d) in src.iter().zip(dst) {
        let (xs, ys, xd, yd) = (s.x - sx, s.y - sy, d.x - dx, d.y - dy);
        num_a += xs * xd + ys * yd;
        num_b += xs * yd - ys * xd;
        den += xs * xs + ys * ys;
    }
    // `src` is the fixed template, so `den` is never zero.
    let (a, b) = (num_a / den, num_b / den);
    [a, b, dx - (a * sx - b * sy), dy - (b * sx + a * sy)]
}

/// Bilinear sample at pixel-centre coordinates, clamped to the image.
fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = image.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x, y| image.get_pixel(x, y).0.map(f32::from);
    let (p00, p10, p01, p11) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    Rgb(std::array::from_fn(|c| {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    }))
}

/// Feature vector of an aligned [`CROP_SIZE`]² crop ([`FEATURE_LEN`] values):
/// a 16×16 grey thumbnail normalised to zero mean / unit contrast, then for a
/// 4×4 grid the cell's rg-chromaticity and brightness relative to the
/// forehead band, followed by the forehead's own values.
pub fn features(crop: &RgbImage) -> Result<Vec<f32>, MaskError> {
    if crop.dimensions() != (CROP_SIZE, CROP_SIZE) {
        return Err(MaskError::InvalidInput(format!(
            "crop is {:?}, expected {CROP_SIZE}²",
            crop.dimensions()
        )));
    }
    let mut out = Vec::with_capacity(FEATURE_LEN);
    let rgb: Vec<[f32; 3]> = crop
        .pixels()
        .map(|p| p.0.map(|v| v as f32 / 255.0))
        .collect();
    let grey: Vec<f32> = rgb
        .iter()
        .map(|[r, g, b]| 0.299 * r + 0.587 * g + 0.114 * b)
        .collect();

    // Thumbnail: contrast normalisation removes exposure differences.
    let mean = grey.iter().sum::<f32>() / grey.len() as f32;
    let var = grey.iter().map(|g| (g - mean) * (g - mean)).sum::<f32>() / grey.len() as f32;
    let inv = 1.0 / var.sqrt().max(0.02);
    let f = S / THUMB;
    for ty in 0..THUMB {
        for tx in 0..THUMB {
            let mut acc = 0.0;
            for dy in 0..f {
                for dx in 0..f {
                    acc += grey[(ty * f + dy) * S + tx * f + dx];
                }
            }
            out.push((acc / (f * f) as f32 - mean) * inv);
        }
    }

    // Colour relative to the forehead band (above the eyes, centre columns),
    // which stays uncovered by masks and carries the person's skin tone.
    let region = |x0: usize, x1: usize, y0: usize, y1: usize| {
        let mut acc = [0.0f32; 3];
        for y in y0..y1 {
            for x in x0..x1 {
                let p = rgb[y * S + x];
                for c in 0..3 {
                    acc[c] += p[c];
                }
            }
        }
        let n = ((x1 - x0) * (y1 - y0)) as f32;
        let [r, g, b] = acc.map(|v| v / n);
        let sum = r + g + b + 1e-3;
        [r / sum, g / sum, (r + g + b) / 3.0]
    };
    let reference = region(S / 4, 3 * S / 4, S / 16, 3 * S / 8);
    let cell = S / COLOR_GRID;
    for gy in 0..COLOR_GRID {
        for gx in 0..COLOR_GRID {
            let [r, g, l] = region(gx * cell, (gx + 1) * cell, gy * cell, (gy + 1) * cell);
            out.push((r - reference[0]) * 10.0);
            out.push((g - reference[1]) * 10.0);
            out.push(l / (reference[2] + 0.05) - 1.0);
        }
    }
    out.extend([reference[0] * 3.0, reference[1] * 3.0, reference[2]]);
    debug_assert_eq!(out.len(), FEATURE_LEN);
    Ok(out)
}

/// FNV-1a, 32-bit: detects truncation or bit rot of the weight file.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_weights(hidden: usize) -> MaskWeights {
        let n = FEATURE_LEN;
        let (w1, b1, w2) = if hidden == 0 {
            (Vec::new(), Vec::new(), vec![0.01; n])
        } else {
            (
                vec![0.001; hidden * n],
                vec![0.0; hidden],
                vec![0.5; hidden],
            )
        };
        MaskWeights {
            threshold: MASK_THRESHOLD,
            mean: vec![0.0; n],
            inv_std: vec![1.0; n],
            hidden,
            w1,
            b1,
            w2,
            b2: -0.25,
        }
    }

    #[test]
    fn weights_round_trip() {
        for hidden in [0, 3] {
            let w = tiny_weights(hidden);
            let bytes = w.to_bytes().unwrap();
            assert_eq!(MaskWeights::from_bytes(&bytes).unwrap(), w);
        }
    }

    #[test]
    fn corrupt_weights_give_typed_errors() {
        let good = tiny_weights(2).to_bytes().unwrap();
        assert_eq!(MaskWeights::from_bytes(&[]), Err(MaskError::BadMagic));
        assert_eq!(
            MaskWeights::from_bytes(&good[..10]),
            Err(MaskError::BadMagic)
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(MaskWeights::from_bytes(&bad), Err(MaskError::BadMagic));
        let mut bad = good.clone();
        bad[8] = 99;
        assert_eq!(
            MaskWeights::from_bytes(&bad),
            Err(MaskError::UnsupportedVersion(99))
        );
        let mut bad = good.clone();
        bad[16] ^= 1;
        assert!(matches!(
            MaskWeights::from_bytes(&bad),
            Err(MaskError::Shape(_))
        ));
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            MaskWeights::from_bytes(&bad),
            Err(MaskError::Shape(_))
        ));
        assert!(matches!(
            MaskWeights::from_bytes(&good[..good.len() - 1]),
            Err(MaskError::Length { .. })
        ));
        let mut bad = good.clone();
        bad[HEADER_LEN + 40] ^= 0x10;
        assert_eq!(MaskWeights::from_bytes(&bad), Err(MaskError::Checksum));
        // A NaN with a valid checksum is still refused.
        let mut w = tiny_weights(0);
        w.mean[5] = f32::NAN;
        let bytes = w.to_bytes().unwrap();
        assert_eq!(MaskWeights::from_bytes(&bytes), Err(MaskError::NonFinite));
        let e: VisionError = MaskError::Checksum.into();
        assert!(matches!(e, VisionError::InvalidModel(_)));
    }

    #[test]
    fn embedded_weights_parse() {
        let c = MaskClassifier::embedded().unwrap();
        assert!(c.weights().threshold > 0.0 && c.weights().threshold < 1.0);
    }

    fn template_landmarks(scale: f32, dx: f32, dy: f32) -> FivePoints {
        let p = |i: usize| Point {
            x: TEMPLATE_112[i].0 * scale + dx,
            y: TEMPLATE_112[i].1 * scale + dy,
        };
        FivePoints {
            left_eye: p(0),
            right_eye: p(1),
            nose: p(2),
            left_lip: p(3),
            right_lip: p(4),
        }
    }

    #[test]
    fn crop_of_template_placed_face_is_the_face_region() {
        // Image where the template's 112×112 frame sits at (100, 50), scale 2:
        // red inside the frame's top half, blue in its bottom half.
        let mut img = RgbImage::from_pixel(500, 400, Rgb([0, 255, 0]));
        for y in 50..274 {
            for x in 100..324 {
                let c = if y < 50 + 112 {
                    [255, 0, 0]
                } else {
                    [0, 0, 255]
                };
                img.put_pixel(x, y, Rgb(c));
            }
        }
        let crop = aligned_crop(&img, &template_landmarks(2.0, 100.0, 50.0), 32).unwrap();
        assert_eq!(crop.dimensions(), (32, 32));
        assert_eq!(crop.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(crop.get_pixel(31, 15).0, [255, 0, 0]);
        assert_eq!(crop.get_pixel(0, 16).0, [0, 0, 255]);
        assert_eq!(crop.get_pixel(31, 31).0, [0, 0, 255]);
    }

    #[test]
    fn crop_follows_rotation_and_clamps_outside_pixels() {
        // A 2-pixel-wide horizontal gradient image; rotate the landmarks by
        // 90° and the crop's gradient must run vertically.
        let img = RgbImage::from_fn(200, 200, |x, _| Rgb([x as u8, 0, 0]));
        let lm = template_landmarks(1.0, 40.0, 40.0);
        let rot = |p: Point| Point {
            x: 100.0 - (p.y - 100.0),
            y: 100.0 + (p.x - 100.0),
        };
        let rotated = FivePoints {
            left_eye: rot(lm.left_eye),
            right_eye: rot(lm.right_eye),
            nose: rot(lm.nose),
            left_lip: rot(lm.left_lip),
            right_lip: rot(lm.right_lip),
        };
        let crop = aligned_crop(&img, &rotated, 16).unwrap();
        // Along a crop row x in the image is constant; down a column it falls.
        assert_eq!(crop.get_pixel(0, 8).0[0], crop.get_pixel(15, 8).0[0]);
        assert!(crop.get_pixel(8, 0).0[0] > crop.get_pixel(8, 15).0[0]);
        // Landmarks far outside: every pixel clamps to the image's edge.
        let far = template_landmarks(1.0, 5000.0, 5000.0);
        let crop = aligned_crop(&img, &far, 8).unwrap();
        assert!(crop.pixels().all(|p| p.0 == [199, 0, 0]));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let img = RgbImage::new(10, 10);
        let mut lm = template_landmarks(1.0, 0.0, 0.0);
        lm.nose.x = f32::NAN;
        assert!(matches!(
            aligned_crop(&img, &lm, 32),
            Err(MaskError::InvalidInput(_))
        ));
        let lm = template_landmarks(1.0, 0.0, 0.0);
        assert!(aligned_crop(&RgbImage::new(0, 0), &lm, 32).is_err());
        assert!(aligned_crop(&img, &lm, 0).is_err());
        assert!(features(&RgbImage::new(8, 8)).is_err());
        // Degenerate landmarks (all equal) still give a crop.
        let p = Point { x: 3.0, y: 3.0 };
        let same = FivePoints {
            left_eye: p,
            right_eye: p,
            nose: p,
            left_lip: p,
            right_lip: p,
        };
        assert!(aligned_crop(&img, &same, 32).is_ok());
    }

    #[test]
    fn features_have_the_documented_length_and_are_finite() {
        let flat = RgbImage::from_pixel(32, 32, Rgb([0, 0, 0]));
        let noisy = RgbImage::from_fn(32, 32, |x, y| {
            Rgb([(x * 7) as u8, (y * 5) as u8, (x ^ y) as u8])
        });
        for crop in [flat, noisy] {
            let f = features(&crop).unwrap();
            assert_eq!(f.len(), FEATURE_LEN);
            assert!(f.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn logit_matches_a_hand_computed_linear_model() {
        let mut w = tiny_weights(0);
        w.w2 = vec![0.0; FEATURE_LEN];
        w.w2[0] = 2.0;
        w.mean[0] = 1.0;
        w.inv_std[0] = 0.5;
        let mut f = vec![0.0; FEATURE_LEN];
        f[0] = 3.0;
        assert!((w.logit(&f) - (2.0 * (3.0 - 1.0) * 0.5 - 0.25)).abs() < 1e-6);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7 && sigmoid(1e9) <= 1.0);
    }
}
