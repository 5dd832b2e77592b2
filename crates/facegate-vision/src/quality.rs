//! Is a face judgeable? Liveness models need a face large, sharp, well
//! exposed and frontal enough; a face that is not gets a distinct outcome
//! ([`QualityIssue`]) instead of a liveness score.
//!
//! Every measure is taken on the original image around the detector's box
//! and five points, at a fixed working scale so that the same face gives the
//! same figures at any photo resolution. Limits and how they were set:
//! docs/models.md ("Quality gate").

use image::RgbImage;

pub use facegate_core::QualityIssue;

use crate::geometry::{BoxF, FivePoints};
use crate::pose::Pose;

/// Smallest face width (detector box, pixels) that is judged. The vendors
/// document 60 px; MiniFASNet's 80 px input then holds the face at about
/// its own resolution (2.7 × 60 px ≈ 160 px crop, halved).
pub const MIN_FACE_PX: f32 = 60.0;
/// Largest |yaw| and |pitch| (degrees) that is judged.
pub const MAX_POSE_DEG: f32 = 45.0;
/// Lowest [`FaceQuality::sharpness`] that is judged. The sharpest-to-
/// blurriest live frames of the development set measure 0.107–0.029 and
/// are all judged correctly; this leaves a margin below them.
pub const MIN_SHARPNESS: f32 = 0.02;
/// Darkest and brightest mean luma (0–255) of the inner face that is
/// judged. Live development frames span 34–232 and MiniFASNet still scores
/// them ≥ 0.86 at both ends, so the gate only stops faces darker or
/// brighter than anything it was seen to judge.
pub const MIN_LUMA: f32 = 20.0;
/// See [`MIN_LUMA`].
pub const MAX_LUMA: f32 = 245.0;
/// Largest share of the inner face that may be clipped (luma < 3 or
/// ≥ 252); live development frames reach 0.44, still judged correctly.
pub const MAX_CLIPPED: f32 = 0.6;

/// Side of the grey face patch the sharpness and exposure are measured on.
const PATCH: u32 = 64;

/// The measures the quality gate looks at, for one face.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FaceQuality {
    /// Width of the detector's box, pixels.
    pub face_px: f32,
    /// Head pose, when the landmarks allow one.
    pub yaw: Option<f32>,
    /// See [`FaceQuality::yaw`].
    pub pitch: Option<f32>,
    /// Detail at the face's own scale: mean absolute Laplacian of the
    /// 64 × 64 grey face patch divided by its luma range (robust 2nd–98th
    /// percentile), so independent of contrast and exposure. Sharp webcam
    /// faces measure 0.05–0.15, a heavily defocused or motion-blurred one
    /// under 0.025.
    pub sharpness: f32,
    /// Mean luma (0–255) of the inner face (eyes to mouth).
    pub luma: f32,
    /// Share of the inner face's pixels that are clipped black or white.
    pub clipped: f32,
}

impl FaceQuality {
    /// The first reason (size, pose, blur, exposure, in that order) why the
    /// face cannot be judged, or `None` when it can.
    pub fn issue(&self) -> Option<QualityIssue> {
        // A NaN measure compares false, so it fails its gate (fail closed).
        let at_least = |v: f32, min: f32| v >= min;
        let at_most = |v: f32, max: f32| v <= max;
        if !at_least(self.face_px, MIN_FACE_PX) {
            return Some(QualityIssue::FaceTooSmall);
        }
        let turned = |a: Option<f32>| a.is_some_and(|a| !at_most(a.abs(), MAX_POSE_DEG));
        if turned(self.yaw) || turned(self.pitch) {
            return Some(QualityIssue::Pose);
        }
        if !at_least(self.sharpness, MIN_SHARPNESS) {
            return Some(QualityIssue::Blur);
        }
        if !(MIN_LUMA..=MAX_LUMA).contains(&self.luma) || !at_most(self.clipped, MAX_CLIPPED) {
            return Some(QualityIssue::Exposure);
        }
        None
    }
}

/// Luma (BT.601) of an RGB pixel.
fn luma(p: &image::Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

/// The `PATCH` × `PATCH` grey patch of the image inside `b` (clamped to the
/// image), each patch pixel the mean of the source pixels it covers.
fn grey_patch(image: &RgbImage, b: &BoxF) -> Option<Vec<f32>> {
    let (w, h) = image.dimensions();
    let b = b.clamp_to(w, h);
    if b.width() < 1.0 || b.height() < 1.0 {
        return None;
    }
    let n = PATCH as usize;
    let mut out = vec![0.0f32; n * n];
    let (sx, sy) = (b.width() / PATCH as f32, b.height() / PATCH as f32);
    for (j, row) in out.chunks_exact_mut(n).enumerate() {
        let y0 = b.y0 + j as f32 * sy;
        let (ya, yb) = (y0.floor() as u32, ((y0 + sy).ceil() as u32).min(h));
        for (i, v) in row.iter_mut().enumerate() {
            let x0 = b.x0 + i as f32 * sx;
            let (xa, xb) = (x0.floor() as u32, ((x0 + sx).ceil() as u32).min(w));
            let (mut sum, mut count) = (0.0f32, 0u32);
            for y in ya.min(h - 1)..yb.max(ya.min(h - 1) + 1) {
                for x in xa.min(w - 1)..xb.max(xa.min(w - 1) + 1) {
                    sum += luma(image.get_pixel(x, y));
                    count += 1;
                }
            }
            *v = sum / count.max(1) as f32;
        }
    }
    Some(out)
}

/// Value at quantile `q` of `v` (sorted copy).
fn quantile(v: &[f32], q: f32) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s.get(((s.len().saturating_sub(1)) as f32 * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Sharpness of a grey patch (see [`FaceQuality::sharpness`]).
fn sharpness(patch: &[f32]) -> f32 {
    let n = PATCH as usize;
    let mut sum = 0.0f32;
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let c = patch[y * n + x];
            let lap = patch[y * n + x - 1]
                + patch[y * n + x + 1]
                + patch[(y - 1) * n + x]
                + patch[(y + 1) * n + x]
                - 4.0 * c;
            sum += lap.abs();
        }
    }
    let mean = sum / ((n - 2) * (n - 2)) as f32;
    let range = quantile(patch, 0.98) - quantile(patch, 0.02);
    mean / range.max(8.0)
}

/// The inner face: from a little above the eyes to a little below the
/// mouth, between the outer eye positions (the part every face shows, free
/// of hair and background).
fn inner_face(l: &FivePoints) -> BoxF {
    let xs = l.as_array().map(|p| p.x);
    let ys = l.as_array().map(|p| p.y);
    let (x0, x1) = (
        xs.iter().copied().fold(f32::INFINITY, f32::min),
        xs.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f32::INFINITY, f32::min),
        ys.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    );
    let (mx, my) = (0.1 * (x1 - x0), 0.15 * (y1 - y0));
    BoxF {
        x0: x0 - mx,
        y0: y0 - my,
        x1: x1 + mx,
        y1: y1 + my,
    }
}

/// Measures one face: `bbox` and `landmarks` as the detector gave them,
/// `pose` from [`crate::pose::estimate`] (None: pose is not gated).
pub fn measure(
    image: &RgbImage,
    bbox: &BoxF,
    landmarks: &FivePoints,
    pose: Option<&Pose>,
) -> FaceQuality {
    let inner = inner_face(landmarks);
    let (luma, clipped) = match grey_patch(image, &inner) {
        Some(p) => {
            let mean = p.iter().sum::<f32>() / p.len() as f32;
            let clip = p.iter().filter(|&&v| !(3.0..252.0).contains(&v)).count();
            (mean, clip as f32 / p.len() as f32)
        }
        None => (0.0, 1.0),
    };
    FaceQuality {
        face_px: bbox.width(),
        yaw: pose.map(|p| p.yaw),
        pitch: pose.map(|p| p.pitch),
        sharpness: grey_patch(image, bbox).map_or(0.0, |p| sharpness(&p)),
        luma,
        clipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Point;

    fn points(cx: f32, cy: f32, s: f32) -> FivePoints {
        let p = |dx: f32, dy: f32| Point {
            x: cx + dx * s,
            y: cy + dy * s,
        };
        FivePoints {
            left_eye: p(-0.3, -0.2),
            right_eye: p(0.3, -0.2),
            nose: p(0.0, 0.05),
            left_lip: p(-0.25, 0.3),
            right_lip: p(0.25, 0.3),
        }
    }

    fn face(cx: f32, cy: f32, s: f32) -> BoxF {
        BoxF {
            x0: cx - s / 2.0,
            y0: cy - 0.6 * s,
            x1: cx + s / 2.0,
            y1: cy + 0.6 * s,
        }
    }

    fn checker(w: u32, h: u32, cell: u32, lo: u8, hi: u8) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = if (x / cell + y / cell).is_multiple_of(2) {
                lo
            } else {
                hi
            };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn a_flat_image_is_blurred_and_a_textured_one_is_not() {
        let flat = RgbImage::from_pixel(400, 400, image::Rgb([120, 110, 100]));
        let q = measure(
            &flat,
            &face(200.0, 200.0, 150.0),
            &points(200.0, 200.0, 150.0),
            None,
        );
        assert_eq!(q.issue(), Some(QualityIssue::Blur), "{q:?}");
        let sharp = checker(400, 400, 6, 60, 190);
        let q = measure(
            &sharp,
            &face(200.0, 200.0, 150.0),
            &points(200.0, 200.0, 150.0),
            None,
        );
        assert!(q.sharpness > MIN_SHARPNESS, "{q:?}");
        assert_eq!(q.issue(), None, "{q:?}");
    }

    #[test]
    fn gates_apply_in_order() {
        let img = checker(400, 400, 6, 60, 190);
        let q = measure(
            &img,
            &face(200.0, 200.0, 50.0),
            &points(200.0, 200.0, 50.0),
            None,
        );
        assert_eq!(q.issue(), Some(QualityIssue::FaceTooSmall));
        let turned = Pose {
            yaw: 50.0,
            pitch: 0.0,
            roll: 0.0,
        };
        let q = measure(
            &img,
            &face(200.0, 200.0, 150.0),
            &points(200.0, 200.0, 150.0),
            Some(&turned),
        );
        assert_eq!(q.issue(), Some(QualityIssue::Pose));
        let dark = checker(400, 400, 6, 0, 24);
        let q = measure(
            &dark,
            &face(200.0, 200.0, 150.0),
            &points(200.0, 200.0, 150.0),
            None,
        );
        assert_eq!(q.issue(), Some(QualityIssue::Exposure), "{q:?}");
        let bright = checker(400, 400, 6, 240, 255);
        let q = measure(
            &bright,
            &face(200.0, 200.0, 150.0),
            &points(200.0, 200.0, 150.0),
            None,
        );
        assert_eq!(q.issue(), Some(QualityIssue::Exposure), "{q:?}");
    }

    #[test]
    fn degenerate_faces_are_not_judged() {
        let img = RgbImage::new(10, 10);
        let nan = f32::NAN;
        let b = BoxF {
            x0: nan,
            y0: nan,
            x1: nan,
            y1: nan,
        };
        assert!(measure(&img, &b, &points(nan, nan, nan), None)
            .issue()
            .is_some());
        let q = measure(
            &RgbImage::new(0, 0),
            &face(5.0, 5.0, 100.0),
            &points(5.0, 5.0, 100.0),
            None,
        );
        assert!(q.issue().is_some());
    }
}
