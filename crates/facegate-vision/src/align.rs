//! dlib-compatible face alignment: `get_face_chip_details` and
//! `extract_image_chip` with bilinear interpolation, producing the 150×150
//! chip dlib's face recognition network expects.
//!
//! The geometry follows dlib 19.24 operation by operation (same double
//! arithmetic and pixel truncation). Two differences remain:
//! * dlib solves its similarity/affine fits with an SVD; the closed forms
//!   used here agree to ~1e-13 px, which can flip the truncation of an
//!   interpolated value by one level for a handful of pixels.
//! * when the chip is more than 2× smaller than the face region, dlib first
//!   builds a `pyramid_down<2>` image pyramid; this module always samples
//!   the full-resolution image (see [`ChipDetails::needs_pyramid`]).

use image::{Rgb, RgbImage};

use crate::landmarks::similarity_transform;

/// Errors from face alignment.
#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("face chip alignment needs 5 or 68 landmarks, got {0}")]
    WrongPointCount(usize),
    #[error("invalid chip parameters: size {size}, padding {padding}")]
    InvalidParams { size: u32, padding: f64 },
}

/// dlib's rectangle with double coordinates (`drectangle`); `right` and
/// `bottom` are inclusive, so `width = right - left + 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DRect {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl DRect {
    fn empty() -> Self {
        // dlib's default-constructed (empty) drectangle.
        Self {
            left: 0.0,
            top: 0.0,
            right: -1.0,
            bottom: -1.0,
        }
    }

    fn is_empty(&self) -> bool {
        self.top > self.bottom || self.left > self.right
    }

    /// Width as dlib counts it (`right - left + 1`, 0 when empty).
    pub fn width(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.right - self.left + 1.0
        }
    }

    /// Height as dlib counts it (`bottom - top + 1`, 0 when empty).
    pub fn height(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.bottom - self.top + 1.0
        }
    }

    fn area(&self) -> f64 {
        self.width() * self.height()
    }

    fn center(&self) -> [f64; 2] {
        [
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        ]
    }

    fn add_point(self, p: [f64; 2]) -> Self {
        if self.is_empty() {
            return Self {
                left: p[0],
                top: p[1],
                right: p[0],
                bottom: p[1],
            };
        }
        Self {
            left: self.left.min(p[0]),
            top: self.top.min(p[1]),
            right: self.right.max(p[0]),
            bottom: self.bottom.max(p[1]),
        }
    }
}

/// Where and how to cut a chip out of an image (dlib's `chip_details`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    /// The (unrotated) region of the image the chip covers.
    pub rect: DRect,
    /// Rotation of the region around its centre, in radians.
    pub angle: f64,
    pub rows: u32,
    pub cols: u32,
}

/// dlib's 5-point mean face (right eye outer, right eye inner, left eye
/// outer, left eye inner, nose base), in a unit box.
const MEAN_FACE_5: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// dlib's mean positions of 68-point landmarks 17..=67.
const MEAN_FACE_68_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
const MEAN_FACE_68_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345,
    0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852,
    0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388,
    0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746,
    0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];

/// dlib's `get_face_chip_details(det, size, padding)` for a 5- or 68-point
/// shape (dlib uses `size = 150, padding = 0.25` for face recognition).
/// Pass the landmarks as dlib would: rounded to integer pixels
/// ([`crate::landmarks::ShapePredictor::predict_rounded`]) to reproduce it exactly.
pub fn get_face_chip_details(
    shape: &[(f32, f32)],
    size: u32,
    padding: f64,
) -> Result<ChipDetails, AlignError> {
    if size == 0 || padding.is_nan() || padding < 0.0 {
        return Err(AlignError::InvalidParams { size, padding });
    }
    let s = f64::from(size);
    let norm = |x: f64| (padding + x) / (2.0 * padding + 1.0) * s;
    let mut from = Vec::new();
    let mut to = Vec::new();
    match shape.len() {
        5 => {
            for (m, p) in MEAN_FACE_5.iter().zip(shape) {
                from.push([norm(m[0]), norm(m[1])]);
                to.push([f64::from(p.0), f64::from(p.1)]);
            }
        }
        68 => {
            for i in 17..68 {
                // dlib ignores the lower lip and the eyebrows.
                if (55..=59).contains(&i) || (65..=67).contains(&i) || (17..=26).contains(&i) {
                    continue;
                }
                from.push([norm(MEAN_FACE_68_X[i - 17]), norm(MEAN_FACE_68_Y[i - 17])]);
                to.push([f64::from(shape[i].0), f64::from(shape[i].1)]);
            }
        }
        n => return Err(AlignError::WrongPointCount(n)),
    }
    Ok(chip_from_points(&from, &to, size, size))
}

/// dlib's `chip_details(chip_points, img_points, dims)` constructor.
fn chip_from_points(from: &[[f64; 2]], to: &[[f64; 2]], rows: u32, cols: u32) -> ChipDetails {
    let (m, t) = similarity_transform(from, to);
    let (px, py) = (m[0][0], m[1][0]);
    let angle = py.atan2(px);
    let scale = (px * px + py * py).sqrt();
    let (hc, hr) = (f64::from(cols) / 2.0, f64::from(rows) / 2.0);
    let center = [
        m[0][0] * hc + m[0][1] * hr + t[0],
        m[1][0] * hc + m[1][1] * hr + t[1],
    ];
    // dlib's centered_drect(p, w, h) shrinks w and h by one first.
    let w = f64::from(cols) * scale - 1.0;
    let h = f64::from(rows) * scale - 1.0;
    ChipDetails {
        rect: DRect {
            left: center[0] - w / 2.0,
            top: center[1] - h / 2.0,
            right: center[0] + w / 2.0,
            bottom: center[1] + h / 2.0,
        },
        angle,
        rows,
        cols,
    }
}

impl ChipDetails {
    /// Whether dlib would downsample through its image pyramid before
    /// sampling this chip (face region more than twice the chip size),
    /// which this module does not reproduce.
    pub fn needs_pyramid(&self) -> bool {
        let down = |p: [f64; 2]| [p[0] / 2.0 - 1.25, p[1] / 2.0 - 0.75];
        let tl = down([self.rect.left, self.rect.top]);
        let br = down([self.rect.right, self.rect.bottom]);
        let r = DRect {
            left: tl[0],
            top: tl[1],
            right: br[0],
            bottom: br[1],
        };
        r.area() > f64::from(self.rows) * f64::from(self.cols)
    }
}

fn rotate(center: [f64; 2], p: [f64; 2], sin: f64, cos: f64) -> [f64; 2] {
    let (dx, dy) = (p[0] - center[0], p[1] - center[1]);
    [
        cos * dx - sin * dy + center[0],
        sin * dx + cos * dy + center[1],
    ]
}

/// dlib's `floor(v + 0.5)` double → integer conversion.
fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// dlib's `extract_image_chip(img, details, chip)` with bilinear
/// interpolation (pixels whose 2×2 neighbourhood leaves the sampled region
/// are black; interpolated values are truncated, not rounded).
pub fn extract_image_chip(img: &RgbImage, details: &ChipDetails) -> RgbImage {
    let (rows, cols) = (details.rows, details.cols);
    let mut chip = RgbImage::new(cols, rows);
    if rows == 0 || cols == 0 {
        return chip;
    }
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    let rect = details.rect;
    if details.angle == 0.0 && f64::from(rows) == rect.height() && f64::from(cols) == rect.width() {
        // dlib's plain copy for unscaled, unrotated chips.
        let (l, t) = (round_half_up(rect.left), round_half_up(rect.top));
        for (c, r, px) in chip.enumerate_pixels_mut() {
            let (x, y) = (l + i64::from(c), t + i64::from(r));
            if x >= 0 && y >= 0 && x < iw && y < ih {
                *px = *img.get_pixel(x as u32, y as u32);
            }
        }
        return chip;
    }
    let (sin, cos) = details.angle.sin_cos();
    // dlib crops to the rotated region grown by 2 pixels (clipped to the
    // image, rounded to integers) and samples inside that crop only.
    let center = rect.center();
    let rot_rect = [
        [rect.left, rect.top],
        [rect.right, rect.top],
        [rect.left, rect.bottom],
        [rect.right, rect.bottom],
    ]
    .iter()
    .fold(DRect::empty(), |acc, &p| {
        acc.add_point(rotate(center, p, sin, cos))
    });
    let grown = DRect {
        left: (rot_rect.left - 2.0).max(0.0),
        top: (rot_rect.top - 2.0).max(0.0),
        right: (rot_rect.right + 2.0).min((iw - 1) as f64),
        bottom: (rot_rect.bottom + 2.0).min((ih - 1) as f64),
    };
    let bb = [
        round_half_up(grown.left),
        round_half_up(grown.top),
        round_half_up(grown.right),
        round_half_up(grown.bottom),
    ];
    if bb[0] > bb[2] || bb[1] > bb[3] {
        return chip;
    }
    let (bw, bh) = (bb[2] - bb[0] + 1, bb[3] - bb[1] + 1);
    // The chip-to-crop affine map, computed in crop coordinates as dlib does.
    let (ox, oy) = (bb[0] as f64, bb[1] as f64);
    let local = DRect {
        left: rect.left - ox,
        top: rect.top - oy,
        right: rect.right - ox,
        bottom: rect.bottom - oy,
    };
    let lc = local.center();
    let tl = rotate(lc, [local.left, local.top], sin, cos);
    let tr = rotate(lc, [local.right, local.top], sin, cos);
    let bl = rotate(lc, [local.left, local.bottom], sin, cos);
    let (cw, ch) = (f64::from(cols) - 1.0, f64::from(rows) - 1.0);
    // dlib maps chip corners (0,0), (cols-1,0), (0,rows-1) to tl, tr, bl.
    let m = [
        [
            if cw > 0.0 { (tr[0] - tl[0]) / cw } else { 0.0 },
            if ch > 0.0 { (bl[0] - tl[0]) / ch } else { 0.0 },
        ],
        [
            if cw > 0.0 { (tr[1] - tl[1]) / cw } else { 0.0 },
            if ch > 0.0 { (bl[1] - tl[1]) / ch } else { 0.0 },
        ],
    ];
    let raw = img.as_raw();
    let pixel = |x: i64, y: i64| -> [f64; 3] {
        let i = (((y + bb[1]) * iw + x + bb[0]) * 3) as usize;
        match raw.get(i..i + 3) {
            Some(p) => [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])],
            None => [0.0; 3],
        }
    };
    for (c, r, out) in chip.enumerate_pixels_mut() {
        let (cf, rf) = (f64::from(c), f64::from(r));
        let x = m[0][0] * cf + m[0][1] * rf + tl[0];
        let y = m[1][0] * cf + m[1][1] * rf + tl[1];
        let (left, top) = (x.floor() as i64, y.floor() as i64);
        if !(left >= 0 && top >= 0 && left < bw - 1 && top < bh - 1) {
            continue;
        }
        let lr = x - left as f64;
        let tb = y - top as f64;
        let (p00, p01) = (pixel(left, top), pixel(left + 1, top));
        let (p10, p11) = (pixel(left, top + 1), pixel(left + 1, top + 1));
        let mut v = [0u8; 3];
        for k in 0..3 {
            let top_row = (1.0 - lr) * p00[k] + lr * p01[k];
            let bottom_row = (1.0 - lr) * p10[k] + lr * p11[k];
            // dlib truncates (static_cast<unsigned char>).
            v[k] = ((1.0 - tb) * top_row + tb * bottom_row) as u8;
        }
        *out = Rgb(v);
    }
    chip
}

/// The chip dlib's face recognition network consumes: 150×150, padding
/// 0.25, from a 5-point shape (integer landmarks, as dlib rounds them).
pub fn face_chip(img: &RgbImage, shape: &[(f32, f32)]) -> Result<RgbImage, AlignError> {
    let details = get_face_chip_details(shape, 150, 0.25)?;
    Ok(extract_image_chip(img, &details))
}

/// Planar NCHW float32 copy of an RGB image, values 0..255 (the
/// `input` tensor layout of facegate's converted dlib network).
pub fn rgb_nchw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0.0f32; plane * 3];
    for (i, p) in img.pixels().enumerate() {
        out[i] = f32::from(p[0]);
        out[plane + i] = f32::from(p[1]);
        out[2 * plane + i] = f32::from(p[2]);
    }
    out
}

/// The standard ArcFace 5-point template in a 112×112 chip (insightface,
/// also OpenCV's `FaceRecognizerSF::alignCrop`): the image-left eye, the
/// image-right eye, the nose tip, the image-left and image-right mouth
/// corners, in OpenCV's pixel convention (integer coordinates are pixel
/// centres).
pub const ARCFACE_TEMPLATE: [(f64, f64); 5] = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
];
/// Side of the ArcFace / SFace chip.
pub const ARCFACE_CHIP: u32 = 112;

/// The 112×112 chip of a face whose five landmarks are `points` (image
/// pixels, in [`ARCFACE_TEMPLATE`]'s order): the least-squares similarity
/// (Umeyama) from the template onto the points, sampled bilinearly as
/// OpenCV's `warpAffine` does (pixels whose neighbourhood leaves the image
/// read black). When the face is more than 1.5× larger than the chip, each
/// chip pixel averages an n×n grid of samples (n = ⌈scale⌉) instead of one,
/// so large faces are not aliased.
pub fn arcface_chip(img: &RgbImage, points: &[(f64, f64); 5]) -> RgbImage {
    let from: Vec<[f64; 2]> = ARCFACE_TEMPLATE.iter().map(|&(x, y)| [x, y]).collect();
    let to: Vec<[f64; 2]> = points.iter().map(|&(x, y)| [x, y]).collect();
    let (m, t) = similarity_transform(&from, &to);
    let scale = (m[0][0] * m[0][0] + m[1][0] * m[1][0]).sqrt();
    let n = if scale > 1.5 && scale.is_finite() {
        scale.ceil().min(8.0) as u32
    } else {
        1
    };
    let offsets: Vec<f64> = (0..n)
        .map(|i| (f64::from(i) + 0.5) / f64::from(n) - 0.5)
        .collect();
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let raw = img.as_raw();
    let px = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let i = ((y * w + x) * 3) as usize;
        [
            f64::from(raw[i]),
            f64::from(raw[i + 1]),
            f64::from(raw[i + 2]),
        ]
    };
    let mut chip = RgbImage::new(ARCFACE_CHIP, ARCFACE_CHIP);
    let samples = f64::from(n * n);
    for (cx, cy, out) in chip.enumerate_pixels_mut() {
        let mut acc = [0.0f64; 3];
        for &dy in &offsets {
            for &dx in &offsets {
                let (u, v) = (f64::from(cx) + dx, f64::from(cy) + dy);
                let x = m[0][0] * u + m[0][1] * v + t[0];
                let y = m[1][0] * u + m[1][1] * v + t[1];
                if !(x.is_finite() && y.is_finite()) {
                    continue;
                }
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                let (p00, p01) = (px(x0, y0), px(x0 + 1, y0));
                let (p10, p11) = (px(x0, y0 + 1), px(x0 + 1, y0 + 1));
                for k in 0..3 {
                    let top = p00[k] + (p01[k] - p00[k]) * fx;
                    let bottom = p10[k] + (p11[k] - p10[k]) * fx;
                    acc[k] += top + (bottom - top) * fy;
                }
            }
        }
        *out = Rgb(acc.map(|v| (v / samples).round().clamp(0.0, 255.0) as u8));
    }
    chip
}

/// Planar NCHW float32 copy of an RGB image with the channels in BGR order,
/// values 0..255 (what OpenCV's `blobFromImage(bgr, swapRB=false)` gives).
pub fn bgr_nchw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0.0f32; plane * 3];
    for (i, p) in img.pixels().enumerate() {
        out[i] = f32::from(p[2]);
        out[plane + i] = f32::from(p[1]);
        out[2 * plane + i] = f32::from(p[0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcface_chip_of_a_template_placed_face_is_the_region() {
        // Landmarks on the template scaled ×1 and shifted by (30, 20): the
        // chip is the image region starting at (30, 20).
        let img = RgbImage::from_fn(200, 200, |x, y| Rgb([x as u8, y as u8, 7]));
        let pts = ARCFACE_TEMPLATE.map(|(x, y)| (x + 30.0, y + 20.0));
        let chip = arcface_chip(&img, &pts);
        assert_eq!(chip.dimensions(), (112, 112));
        for (x, y, p) in chip.enumerate_pixels() {
            assert_eq!(p.0, [(x + 30) as u8, (y + 20) as u8, 7], "({x},{y})");
        }
        // Twice as large: each chip pixel averages a 2×2 grid around the
        // mapped centre, so a linear ramp keeps its value.
        let big = RgbImage::from_fn(400, 400, |x, y| Rgb([(x / 2) as u8, (y / 2) as u8, 7]));
        let pts2 = ARCFACE_TEMPLATE.map(|(x, y)| (2.0 * x + 60.0, 2.0 * y + 40.0));
        let chip2 = arcface_chip(&big, &pts2);
        let p = chip2.get_pixel(50, 60).0;
        assert!((i32::from(p[0]) - 80).abs() <= 1 && (i32::from(p[1]) - 80).abs() <= 1);
    }

    #[test]
    fn bgr_layout() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([1, 2, 3]));
        img.put_pixel(1, 0, Rgb([4, 5, 6]));
        assert_eq!(bgr_nchw(&img), vec![3.0, 6.0, 2.0, 5.0, 1.0, 4.0]);
    }

    #[test]
    fn nchw_layout() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([1, 2, 3]));
        img.put_pixel(1, 0, Rgb([4, 5, 6]));
        assert_eq!(rgb_nchw(&img), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(
            get_face_chip_details(&[(0.0, 0.0); 3], 150, 0.25),
            Err(AlignError::WrongPointCount(3))
        ));
        assert!(get_face_chip_details(&[(0.0, 0.0); 5], 0, 0.25).is_err());
    }

    #[test]
    fn upright_face_gives_upright_chip() {
        // Landmarks placed exactly on the mean face scaled ×2: no rotation.
        let shape: Vec<(f32, f32)> = MEAN_FACE_5
            .iter()
            .map(|p| ((p[0] * 200.0 + 50.0) as f32, (p[1] * 200.0 + 50.0) as f32))
            .collect();
        let d = get_face_chip_details(&shape, 150, 0.25).unwrap();
        assert!(d.angle.abs() < 1e-3, "{d:?}");
        let img = RgbImage::from_pixel(400, 400, Rgb([10, 20, 30]));
        let chip = extract_image_chip(&img, &d);
        assert_eq!(chip.dimensions(), (150, 150));
        // Flat input: every pixel is 10,20,30 or one level lower (truncation).
        for p in chip.pixels() {
            assert!(p[0] >= 9 && p[0] <= 10 && p[2] >= 29 && p[2] <= 30, "{p:?}");
        }
    }
}
