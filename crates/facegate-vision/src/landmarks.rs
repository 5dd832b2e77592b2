//! Facial landmarks with dlib's ensemble of regression trees
//! (`dlib::shape_predictor`, Kazemi & Sullivan 2014).
//!
//! [`ShapePredictor::predict`] reproduces `shape_predictor::operator()` step
//! by step, including dlib's float/double mix, so that the same model on the
//! same pixels gives the same landmarks. Models come from dlib `.dat` files
//! (converted by `facegate-models`) and are stored in a compact facegate-owned
//! format ([`ShapePredictor::to_bytes`]).

use image::RgbImage;

/// A face box in dlib's `rectangle` convention: `right`/`bottom` are the
/// *inclusive* last column/row, so a 100-pixel-wide box at x=10 has
/// `left = 10, right = 109`.
///
/// dlib itself uses integer (`long`) rectangles; integer-valued `Rect`s
/// reproduce dlib exactly, fractional ones (from other detectors) are
/// accepted and used as is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

/// One split node: go left when `pixel[idx1] - pixel[idx2] > thresh`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFeature {
    pub idx1: u32,
    pub idx2: u32,
    pub thresh: f32,
}

/// A complete binary regression tree stored breadth-first, as dlib does.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionTree {
    /// Split nodes; node `i` has children `2i+1` and `2i+2`.
    pub splits: Vec<SplitFeature>,
    /// `splits.len() + 1` leaf shape deltas, each `2 × num_parts` values,
    /// concatenated.
    pub leaf_values: Vec<f32>,
}

/// One cascade level: its feature pixels (relative to the initial shape)
/// and the trees that read them.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// For each feature pixel, the landmark it is anchored to.
    pub anchor_idx: Vec<u32>,
    /// For each feature pixel, its offset from the anchor in the
    /// normalised (unit box) shape space.
    pub deltas: Vec<[f32; 2]>,
    /// Trees evaluated in order, each adding its leaf to the shape.
    pub trees: Vec<RegressionTree>,
}

/// Errors when building, reading or writing a [`ShapePredictor`].
#[derive(Debug, thiserror::Error)]
pub enum LandmarkError {
    #[error(
        "shape predictor data truncated at byte {offset} (needed {needed} more bytes for {what})"
    )]
    Truncated {
        offset: usize,
        needed: usize,
        what: &'static str,
    },
    #[error("not a facegate shape predictor (bad magic)")]
    BadMagic,
    #[error("unsupported shape predictor format version {0}")]
    UnsupportedVersion(u32),
    #[error("{0} unexpected trailing bytes after the shape predictor")]
    TrailingBytes(usize),
    #[error("invalid shape predictor: {0}")]
    Invalid(String),
}

/// dlib's cascaded regression-tree landmark model.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapePredictor {
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
}

const MAGIC: &[u8; 4] = b"FGSP";
const FORMAT_VERSION: u32 = 1;

impl ShapePredictor {
    /// Validates and builds a predictor. `initial_shape` holds
    /// `x0, y0, x1, y1, …` in the unit box.
    pub fn new(initial_shape: Vec<f32>, cascades: Vec<Cascade>) -> Result<Self, LandmarkError> {
        let invalid = |m: String| Err(LandmarkError::Invalid(m));
        let len = initial_shape.len();
        if len == 0 || !len.is_multiple_of(2) {
            return invalid(format!(
                "initial shape has {len} values, expected a positive even count"
            ));
        }
        let parts = len / 2;
        for (ci, c) in cascades.iter().enumerate() {
            if c.anchor_idx.len() != c.deltas.len() {
                return invalid(format!(
                    "cascade {ci}: {} anchors but {} deltas",
                    c.anchor_idx.len(),
                    c.deltas.len()
                ));
            }
            if let Some(a) = c.anchor_idx.iter().find(|&&a| a as usize >= parts) {
                return invalid(format!("cascade {ci}: anchor {a} >= {parts} parts"));
            }
            let pixels = c.deltas.len();
            for (ti, t) in c.trees.iter().enumerate() {
                let want = (t.splits.len() + 1).checked_mul(len);
                if want != Some(t.leaf_values.len()) {
                    return invalid(format!(
                        "cascade {ci} tree {ti}: {} leaf values for {} splits",
                        t.leaf_values.len(),
                        t.splits.len()
                    ));
                }
                if t.splits
                    .iter()
                    .any(|s| s.idx1 as usize >= pixels || s.idx2 as usize >= pixels)
                {
                    return invalid(format!(
                        "cascade {ci} tree {ti}: split reads a pixel >= {pixels}"
                    ));
                }
            }
        }
        Ok(Self {
            initial_shape,
            cascades,
        })
    }

    /// Number of landmarks predicted.
    pub fn num_parts(&self) -> usize {
        self.initial_shape.len() / 2
    }

    /// The mean shape the cascade starts from (unit box coordinates).
    pub fn initial_shape(&self) -> &[f32] {
        &self.initial_shape
    }

    /// The cascade levels.
    pub fn cascades(&self) -> &[Cascade] {
        &self.cascades
    }

    /// Landmarks in image pixel coordinates, as `f32`.
    pub fn predict(&self, image: &RgbImage, face: Rect) -> Vec<(f32, f32)> {
        self.predict_f64(image, face)
            .into_iter()
            .map(|(x, y)| (x as f32, y as f32))
            .collect()
    }

    /// Landmarks rounded to integer pixels exactly like dlib's
    /// `full_object_detection` parts (`floor(v + 0.5)` of the double value).
    /// dlib's face chip alignment consumes these rounded points.
    pub fn predict_rounded(&self, image: &RgbImage, face: Rect) -> Vec<(i64, i64)> {
        self.predict_f64(image, face)
            .into_iter()
            .map(|(x, y)| (round_half_up(x), round_half_up(y)))
            .collect()
    }

    /// Landmarks in image pixel coordinates at full (double) precision:
    /// dlib's `shape_predictor::operator()` before its rounding to `point`.
    pub fn predict_f64(&self, image: &RgbImage, face: Rect) -> Vec<(f64, f64)> {
        let unnorm = Unnormalize::new(face);
        let (w, h) = (i64::from(image.width()), i64::from(image.height()));
        let raw = image.as_raw();
        let mut shape = self.initial_shape.clone();
        let mut features: Vec<f32> = Vec::new();
        for cascade in &self.cascades {
            // dlib casts the similarity transform to float before use.
            let m = similarity_m(&self.initial_shape, &shape).map(|row| row.map(|v| v as f32));
            features.clear();
            for (&anchor, d) in cascade.anchor_idx.iter().zip(&cascade.deltas) {
                let a = anchor as usize * 2;
                // Same evaluation order as dlib's `tform*delta + location`, in f32.
                let sx = m[0][0] * d[0] + m[0][1] * d[1] + shape[a];
                let sy = m[1][0] * d[0] + m[1][1] * d[1] + shape[a + 1];
                let (px, py) = unnorm.apply(f64::from(sx), f64::from(sy));
                let (px, py) = (round_half_up(px), round_half_up(py));
                let value = if px >= 0 && py >= 0 && px < w && py < h {
                    let i = ((py * w + px) * 3) as usize;
                    match raw.get(i..i + 3) {
                        // dlib's rgb → grayscale: integer mean of the channels.
                        Some(p) => {
                            ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32
                        }
                        None => 0.0,
                    }
                } else {
                    0.0
                };
                features.push(value);
            }
            for tree in &cascade.trees {
                let leaf = tree.leaf_index(&features);
                let n = shape.len();
                if let Some(values) = tree.leaf_values.get(leaf * n..(leaf + 1) * n) {
                    for (s, v) in shape.iter_mut().zip(values) {
                        *s += *v;
                    }
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| unnorm.apply(f64::from(p[0]), f64::from(p[1])))
            .collect()
    }

    /// Serialises into facegate's compact format (little endian):
    /// `"FGSP"`, u32 version, u32 shape length, f32 initial shape,
    /// u32 cascade count, then per cascade: u32 pixel count, u32 anchors,
    /// f32 delta pairs, u32 tree count, and per tree: u32 split count,
    /// (u32, u32, f32) splits, f32 leaf values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        put_len(&mut out, self.initial_shape.len());
        put_f32s(&mut out, &self.initial_shape);
        put_len(&mut out, self.cascades.len());
        for c in &self.cascades {
            put_len(&mut out, c.anchor_idx.len());
            for &a in &c.anchor_idx {
                put_u32(&mut out, a);
            }
            for d in &c.deltas {
                put_f32s(&mut out, d);
            }
            put_len(&mut out, c.trees.len());
            for t in &c.trees {
                put_len(&mut out, t.splits.len());
                for s in &t.splits {
                    put_u32(&mut out, s.idx1);
                    put_u32(&mut out, s.idx2);
                    out.extend_from_slice(&s.thresh.to_le_bytes());
                }
                put_f32s(&mut out, &t.leaf_values);
            }
        }
        out
    }

    /// Parses [`Self::to_bytes`] output. Corrupt or truncated input gives an
    /// error, never a panic; no allocation exceeds what the input can hold.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LandmarkError> {
        let mut r = ByteReader { buf: bytes, pos: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(LandmarkError::BadMagic);
        }
        let version = r.u32("version")?;
        if version != FORMAT_VERSION {
            return Err(LandmarkError::UnsupportedVersion(version));
        }
        let shape_len = r.count(4, "initial shape")?;
        let initial_shape = r.f32s(shape_len, "initial shape")?;
        let n_cascades = r.count(8, "cascades")?;
        let mut cascades = Vec::with_capacity(n_cascades);
        for _ in 0..n_cascades {
            let pixels = r.count(12, "feature pixels")?;
            let anchor_idx = (0..pixels)
                .map(|_| r.u32("anchor"))
                .collect::<Result<Vec<_>, _>>()?;
            let deltas = (0..pixels)
                .map(|_| Ok([r.f32("delta")?, r.f32("delta")?]))
                .collect::<Result<Vec<_>, LandmarkError>>()?;
            let n_trees = r.count(4, "trees")?;
            let mut trees = Vec::with_capacity(n_trees);
            for _ in 0..n_trees {
                let n_splits = r.count(12, "splits")?;
                let splits = (0..n_splits)
                    .map(|_| {
                        Ok(SplitFeature {
                            idx1: r.u32("split")?,
                            idx2: r.u32("split")?,
                            thresh: r.f32("split")?,
                        })
                    })
                    .collect::<Result<Vec<_>, LandmarkError>>()?;
                let leaves = (n_splits + 1)
                    .checked_mul(shape_len)
                    .ok_or_else(|| LandmarkError::Invalid("leaf count overflows".into()))?;
                let leaf_values = r.f32s(leaves, "leaf values")?;
                trees.push(RegressionTree {
                    splits,
                    leaf_values,
                });
            }
            cascades.push(Cascade {
                anchor_idx,
                deltas,
                trees,
            });
        }
        if r.pos != bytes.len() {
            return Err(LandmarkError::TrailingBytes(bytes.len() - r.pos));
        }
        Self::new(initial_shape, cascades)
    }
}

impl RegressionTree {
    /// Walks the tree like dlib's `regression_tree::operator()`.
    fn leaf_index(&self, features: &[f32]) -> usize {
        let mut i = 0usize;
        while let Some(s) = self.splits.get(i) {
            let a = features.get(s.idx1 as usize).copied().unwrap_or(0.0);
            let b = features.get(s.idx2 as usize).copied().unwrap_or(0.0);
            i = if a - b > s.thresh {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
        i - self.splits.len()
    }
}

/// dlib's `floor(v + 0.5)` conversion from a double to an integer point.
fn round_half_up(v: f64) -> i64 {
    // `as` saturates, so NaN/huge values cannot panic (they land outside the image).
    (v + 0.5).floor() as i64
}

/// dlib's `unnormalizing_tform(rect)`: unit box → image, `(0,0)` to the
/// top-left corner and `(1,1)` to the bottom-right corner.
struct Unnormalize {
    scale: [f64; 2],
    offset: [f64; 2],
}

impl Unnormalize {
    fn new(r: Rect) -> Self {
        let (l, t) = (f64::from(r.left), f64::from(r.top));
        Self {
            scale: [f64::from(r.right) - l, f64::from(r.bottom) - t],
            offset: [l, t],
        }
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.scale[0] * x + self.offset[0],
            self.scale[1] * y + self.offset[1],
        )
    }
}

/// The linear part (`c·R`) of the least-squares similarity transform mapping
/// `from` onto `to` (dlib's `find_similarity_transform`, Umeyama).
///
/// For 2-D points the optimum has the closed form
/// `[[a, -b], [b, a]]` with `a = (cov00 + cov11)/σ²`, `b = (cov10 - cov01)/σ²`,
/// which equals Umeyama's `c·R` without needing an SVD.
pub(crate) fn similarity_m(from: &[f32], to: &[f32]) -> [[f64; 2]; 2] {
    let from: Vec<[f64; 2]> = from
        .chunks_exact(2)
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    let to: Vec<[f64; 2]> = to
        .chunks_exact(2)
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    if from.len() < 2 || from.len() != to.len() {
        // dlib uses the identity for a single landmark.
        return [[1.0, 0.0], [0.0, 1.0]];
    }
    let (m, _) = similarity_transform(&from, &to);
    m
}

/// Full least-squares similarity transform `to ≈ M·from + t` (dlib's
/// `find_similarity_transform`), in double precision.
pub(crate) fn similarity_transform(
    from: &[[f64; 2]],
    to: &[[f64; 2]],
) -> ([[f64; 2]; 2], [f64; 2]) {
    let n = from.len().min(to.len()).max(1) as f64;
    let mut mf = [0.0f64; 2];
    let mut mt = [0.0f64; 2];
    for (f, t) in from.iter().zip(to) {
        mf[0] += f[0];
        mf[1] += f[1];
        mt[0] += t[0];
        mt[1] += t[1];
    }
    mf = [mf[0] / n, mf[1] / n];
    mt = [mt[0] / n, mt[1] / n];
    let mut sigma_from = 0.0f64;
    let mut cov = [[0.0f64; 2]; 2];
    for (f, t) in from.iter().zip(to) {
        let df = [f[0] - mf[0], f[1] - mf[1]];
        let dt = [t[0] - mt[0], t[1] - mt[1]];
        sigma_from += df[0] * df[0] + df[1] * df[1];
        cov[0][0] += dt[0] * df[0];
        cov[0][1] += dt[0] * df[1];
        cov[1][0] += dt[1] * df[0];
        cov[1][1] += dt[1] * df[1];
    }
    sigma_from /= n;
    for row in &mut cov {
        for v in row {
            *v /= n;
        }
    }
    let m = if sigma_from != 0.0 {
        let a = (cov[0][0] + cov[1][1]) / sigma_from;
        let b = (cov[1][0] - cov[0][1]) / sigma_from;
        [[a, -b], [b, a]]
    } else {
        // Degenerate source points: dlib's SVD yields R = I and c = 1.
        [[1.0, 0.0], [0.0, 1.0]]
    };
    let t = [
        mt[0] - (m[0][0] * mf[0] + m[0][1] * mf[1]),
        mt[1] - (m[1][0] * mf[0] + m[1][1] * mf[1]),
    ];
    (m, t)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Validated models never approach u32::MAX elements.
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_f32s(out: &mut Vec<u8>, vs: &[f32]) {
    for v in vs {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LandmarkError> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        if rest.len() < n {
            return Err(LandmarkError::Truncated {
                offset: self.pos,
                needed: n - rest.len(),
                what,
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, LandmarkError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self, what: &'static str) -> Result<f32, LandmarkError> {
        Ok(f32::from_bits(self.u32(what)?))
    }

    /// Reads an element count and checks that `count × min_elem_bytes`
    /// bytes remain, so callers can allocate for it safely.
    fn count(&mut self, min_elem_bytes: usize, what: &'static str) -> Result<usize, LandmarkError> {
        let n = self.u32(what)? as usize;
        let remaining = self.buf.len() - self.pos;
        match n.checked_mul(min_elem_bytes) {
            Some(need) if need <= remaining => Ok(n),
            _ => Err(LandmarkError::Truncated {
                offset: self.pos,
                needed: n.saturating_mul(min_elem_bytes).saturating_sub(remaining),
                what,
            }),
        }
    }

    fn f32s(&mut self, n: usize, what: &'static str) -> Result<Vec<f32>, LandmarkError> {
        let bytes = self.take(n.saturating_mul(4), what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ShapePredictor {
        ShapePredictor::new(
            vec![0.25, 0.25, 0.75, 0.75],
            vec![Cascade {
                anchor_idx: vec![0, 1],
                deltas: vec![[0.0, 0.0], [0.1, -0.1]],
                trees: vec![RegressionTree {
                    splits: vec![SplitFeature {
                        idx1: 0,
                        idx2: 1,
                        thresh: 10.0,
                    }],
                    leaf_values: vec![0.1, 0.0, 0.0, 0.0, -0.1, 0.0, 0.0, 0.0],
                }],
            }],
        )
        .unwrap()
    }

    #[test]
    fn round_trips() {
        let sp = tiny();
        let bytes = sp.to_bytes();
        assert_eq!(ShapePredictor::from_bytes(&bytes).unwrap(), sp);
        for cut in 0..bytes.len() {
            assert!(ShapePredictor::from_bytes(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            ShapePredictor::from_bytes(&extra),
            Err(LandmarkError::TrailingBytes(1))
        ));
    }

    #[test]
    fn corrupt_counts_are_errors() {
        let mut bytes = tiny().to_bytes();
        // Shape length field → enormous.
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ShapePredictor::from_bytes(&bytes).is_err());
        assert!(matches!(
            ShapePredictor::from_bytes(b"nope"),
            Err(LandmarkError::BadMagic)
        ));
    }

    #[test]
    fn predicts_on_dark_and_bright_images() {
        let sp = tiny();
        let face = Rect {
            left: 10.0,
            top: 10.0,
            right: 50.0,
            bottom: 50.0,
        };
        let dark = RgbImage::new(64, 64);
        // All features are 0, so 0 - 0 > 10 is false: right leaf (-0.1 on x0).
        let p = sp.predict(&dark, face);
        assert_eq!(p.len(), 2);
        assert!((p[0].0 - (10.0 + 40.0 * 0.15)).abs() < 1e-5);
        assert_eq!(sp.predict_rounded(&dark, face)[1], (40, 40));
    }

    #[test]
    fn similarity_recovers_rotation_and_scale() {
        let from = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        // Rotate 90° and scale by 2.
        let to = [0.0f32, 0.0, 0.0, 2.0, -2.0, 0.0];
        let m = similarity_m(&from, &to);
        assert!((m[0][0]).abs() < 1e-12 && (m[1][0] - 2.0).abs() < 1e-12);
        assert!((m[0][1] + 2.0).abs() < 1e-12 && m[1][1].abs() < 1e-12);
    }
}
