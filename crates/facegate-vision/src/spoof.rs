//! The MiniFASNet liveness crop: which pixels the anti-spoofing models see
//! and how they are resized, reproducing upstream Silent-Face-Anti-Spoofing
//! (`CropImage._get_new_box` + `cv2.resize`) as closely as possible, because
//! the scores are very sensitive to the crop.
//!
//! The result is the model input: `[1, 3, out, out]` float32, NCHW, **BGR**
//! channel order, values 0..255 without normalisation.

use image::RgbImage;

/// A face box in pixels of the full image: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxXYWH {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

/// An integer pixel rectangle with **inclusive** corners `x1..=x2`, `y1..=y2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    /// First column.
    pub x1: u32,
    /// First row.
    pub y1: u32,
    /// Last column (inclusive).
    pub x2: u32,
    /// Last row (inclusive).
    pub y2: u32,
}

impl CropRect {
    /// Width in pixels (at least 1).
    pub fn width(&self) -> u32 {
        self.x2 - self.x1 + 1
    }
    /// Height in pixels (at least 1).
    pub fn height(&self) -> u32 {
        self.y2 - self.y1 + 1
    }
}

/// Upstream's crop rectangle for a face box and model scale (2.7 for
/// MiniFASNetV2, 4.0 for MiniFASNetV1SE) in a `src_w` x `src_h` image:
/// 1. the scale shrinks to `min(scale, (src_h-1)/h, (src_w-1)/w)`;
/// 2. the box grows to `w*s` x `h*s` around its centre (aspect kept);
/// 3. it is **shifted** (never padded) to lie inside `0..=src-1`;
/// 4. the corners are truncated to integers, inclusive.
///
/// Computed in f64 like upstream's Python. Degenerate input (empty image,
/// non-finite or sub-pixel boxes) is sanitised instead of panicking; an
/// empty image yields a 1x1 rectangle at the origin.
pub fn liveness_crop_rect(src_w: u32, src_h: u32, face: BoxXYWH, scale: f32) -> CropRect {
    let finite_or = |v: f32, d: f64| if v.is_finite() { f64::from(v) } else { d };
    let (x, y) = (finite_or(face.x, 0.0), finite_or(face.y, 0.0));
    let w = finite_or(face.w, 1.0).max(1.0);
    let h = finite_or(face.h, 1.0).max(1.0);
    let (sw, sh) = (f64::from(src_w.max(1)), f64::from(src_h.max(1)));
    // Upstream's scale is the f64 parsed from "2.7"; widening the f32 2.7
    // directly gives 2.7000000477 and shifts the truncated corners by a pixel.
    let scale = scale.to_string().parse::<f64>().unwrap_or(f64::from(scale));
    let s = scale.min((sh - 1.0) / h).min((sw - 1.0) / w).max(0.0);

    let (new_w, new_h) = (w * s, h * s);
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let (mut l, mut t) = (cx - new_w / 2.0, cy - new_h / 2.0);
    let (mut r, mut b) = (cx + new_w / 2.0, cy + new_h / 2.0);
    if l < 0.0 {
        r -= l;
        l = 0.0;
    }
    if t < 0.0 {
        b -= t;
        t = 0.0;
    }
    if r > sw - 1.0 {
        l -= r - sw + 1.0;
        r = sw - 1.0;
    }
    if b > sh - 1.0 {
        t -= b - sh + 1.0;
        b = sh - 1.0;
    }
    // Python's int() truncates toward zero; the clamps only absorb float
    // noise (a box never exceeds the image after step 1).
    let trunc = |v: f64, max: f64| v.trunc().clamp(0.0, max) as u32;
    let (x1, x2) = (trunc(l, sw - 1.0), trunc(r, sw - 1.0));
    let (y1, y2) = (trunc(t, sh - 1.0), trunc(b, sh - 1.0));
    CropRect {
        x1,
        y1,
        x2: x2.max(x1),
        y2: y2.max(y1),
    }
}

/// The model input for one face: the upstream crop resized to `out` x `out`
/// with [`resize_linear`], as NCHW BGR float32 0..255 (`3 * out * out`
/// values). An empty image gives all zeros.
pub fn liveness_crop(image: &RgbImage, face: BoxXYWH, scale: f32, out: u32) -> Vec<f32> {
    let n = out as usize * out as usize;
    if image.width() == 0 || image.height() == 0 {
        return vec![0.0; 3 * n];
    }
    let rect = liveness_crop_rect(image.width(), image.height(), face, scale);
    let rgb = resize_linear(image, rect, out, out);
    let mut tensor = vec![0.0f32; 3 * n];
    for (i, px) in rgb.pixels().enumerate() {
        // Channel 0 is blue: upstream feeds OpenCV's BGR buffer unchanged.
        for (c, &v) in px.0.iter().rev().enumerate() {
            if let Some(slot) = tensor.get_mut(c * n + i) {
                *slot = f32::from(v);
            }
        }
    }
    tensor
}

/// OpenCV fixed-point precision of 8-bit resize weights (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Source index pair and 11-bit weights for one destination coordinate.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: u32,
    i1: u32,
    w0: i32,
    w1: i32,
}

/// Half-pixel-centre taps as OpenCV's `resizeGeneric_` computes them:
/// `f = (float)((d + 0.5) * scale - 0.5)`, `i = floor(f)`, weights
/// `saturate_cast<short>((1 - frac) * 2048)` and `(frac * 2048)` (round half
/// to even). Horizontally an out-of-range tap snaps to the border with zero
/// fraction; vertically only the row indices are clamped and the weights
/// stay as computed, exactly like OpenCV.
fn taps(src: u32, dst: u32, snap_fraction: bool) -> Vec<Tap> {
    // OpenCV: inv_scale = dst / src, scale = 1 / inv_scale (both double).
    let scale = 1.0 / (f64::from(dst) / f64::from(src));
    let last = i64::from(src) - 1;
    (0..dst)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let mut i = f.floor() as i64;
            let mut frac = f - i as f32;
            if snap_fraction {
                if i < 0 {
                    frac = 0.0;
                    i = 0;
                }
                if i >= last {
                    frac = 0.0;
                    i = last;
                }
            }
            let clamp = |v: i64| v.clamp(0, last) as u32;
            Tap {
                i0: clamp(i),
                i1: clamp(i + 1),
                w0: ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32,
                w1: (frac * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

/// Combines two horizontally interpolated rows (values scaled by 2048) the
/// way OpenCV's SIMD `VResizeLinearVec_32s8u` does, which handles every
/// pixel of an 80-pixel 3-channel row on 128-bit SIMD builds (x86 SSE2,
/// ARM NEON): `((s0 >> 4) * b0 >> 16) + ((s1 >> 4) * b1 >> 16)`, then a
/// rounding shift by 2 and saturation to u8. (Its scalar fallback,
/// `(s0*b0 + s1*b1 + 2^21) >> 22`, can differ by one grey level.)
fn vertical(s0: i32, s1: i32, b0: i32, b1: i32) -> u8 {
    let pack = |v: i32| (v >> 4).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
    let mul_hi = |a: i32, b: i32| (a * b) >> 16;
    let v = (mul_hi(pack(s0), b0) + mul_hi(pack(s1), b1) + 2) >> 2;
    v.clamp(0, 255) as u8
}

/// Resizes the inclusive `rect` of `image` to `out_w` x `out_h` with OpenCV
/// `INTER_LINEAR` semantics for 8-bit images: half-pixel centres, borders
/// replicated, weights rounded to 11-bit fixed point, integer accumulation
/// and OpenCV's SIMD rounding of the vertical pass. Bit-exact with
/// `cv2.resize` (4.10 and 5.0, checked on random sizes, 2x up and down
/// included); equal sizes copy the pixels exactly.
/// `rect` is clamped to the image; an empty image or size gives an empty or
/// black result.
pub fn resize_linear(image: &RgbImage, rect: CropRect, out_w: u32, out_h: u32) -> RgbImage {
    let mut dst = RgbImage::new(out_w, out_h);
    let (iw, ih) = (image.width(), image.height());
    if iw == 0 || ih == 0 || out_w == 0 || out_h == 0 {
        return dst;
    }
    let x1 = rect.x1.min(iw - 1);
    let y1 = rect.y1.min(ih - 1);
    let x2 = rect.x2.clamp(x1, iw - 1);
    let y2 = rect.y2.clamp(y1, ih - 1);
    let (cw, ch) = (x2 - x1 + 1, y2 - y1 + 1);

    let xt = taps(cw, out_w, true);
    let yt = taps(ch, out_h, false);
    let raw = image.as_raw();
    let px = |x: u32, y: u32, c: usize| -> i32 {
        let idx = ((y1 + y) as usize * iw as usize + (x1 + x) as usize) * 3 + c;
        raw.get(idx).map_or(0, |&v| i32::from(v))
    };
    // One horizontally resized source row, 3 channels interleaved.
    let hrow = |y: u32| -> Vec<i32> {
        xt.iter()
            .flat_map(|t| (0..3).map(move |c| px(t.i0, y, c) * t.w0 + px(t.i1, y, c) * t.w1))
            .collect()
    };
    let dst_raw: &mut [u8] = &mut dst;
    for (dy, t) in yt.iter().enumerate() {
        let (r0, r1) = (hrow(t.i0), hrow(t.i1));
        let row = dst_raw
            .chunks_exact_mut(out_w as usize * 3)
            .nth(dy)
            .unwrap_or_default();
        for ((d, &s0), &s1) in row.iter_mut().zip(&r0).zip(&r1) {
            *d = vertical(s0, s1, t.w0, t.w1);
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, h: f32) -> BoxXYWH {
        BoxXYWH { x, y, w, h }
    }

    #[test]
    fn box_in_the_middle_grows_around_its_centre() {
        // 100x100 box centred at (320, 240) in 640x480, scale 2.7 -> 270x270.
        let r = liveness_crop_rect(640, 480, face(270.0, 190.0, 100.0, 100.0), 2.7);
        assert_eq!(
            r,
            CropRect {
                x1: 185,
                y1: 105,
                x2: 455,
                y2: 375
            }
        );
        assert_eq!((r.width(), r.height()), (271, 271));
    }

    #[test]
    fn aspect_ratio_is_kept() {
        let r = liveness_crop_rect(640, 480, face(300.0, 200.0, 40.0, 60.0), 2.0);
        assert_eq!(
            r,
            CropRect {
                x1: 280,
                y1: 170,
                x2: 360,
                y2: 290
            }
        );
    }

    #[test]
    fn boxes_near_each_edge_are_shifted_inside() {
        let (w, h) = (640, 480);
        let size = 270; // 100 * 2.7
                        // Left and top: start at 0, keep the full size.
        let r = liveness_crop_rect(w, h, face(10.0, 200.0, 100.0, 100.0), 2.7);
        assert_eq!((r.x1, r.x2), (0, size));
        let r = liveness_crop_rect(w, h, face(300.0, 5.0, 100.0, 100.0), 2.7);
        assert_eq!((r.y1, r.y2), (0, size));
        // Right and bottom: end at the last pixel.
        let r = liveness_crop_rect(w, h, face(600.0, 200.0, 100.0, 100.0), 2.7);
        assert_eq!((r.x1, r.x2), (w - 1 - size, w - 1));
        let r = liveness_crop_rect(w, h, face(300.0, 450.0, 100.0, 100.0), 2.7);
        assert_eq!((r.y1, r.y2), (h - 1 - size, h - 1));
        // A box entirely outside is shifted back in too.
        let r = liveness_crop_rect(w, h, face(-500.0, 900.0, 50.0, 50.0), 2.0);
        assert_eq!(
            r,
            CropRect {
                x1: 0,
                y1: h - 1 - 100,
                x2: 100,
                y2: h - 1
            }
        );
    }

    #[test]
    fn too_big_a_box_clamps_the_scale() {
        // 4.0 * 200 = 800 > 479: s = 479 / 200 = 2.395, the crop is 479 tall.
        let r = liveness_crop_rect(640, 480, face(220.0, 140.0, 200.0, 200.0), 4.0);
        assert_eq!((r.y1, r.y2), (0, 479));
        assert_eq!((r.x1, r.x2), (80, 559));
        // Wider than tall images clamp on the other axis.
        let r = liveness_crop_rect(300, 1000, face(100.0, 400.0, 100.0, 100.0), 4.0);
        assert_eq!((r.x1, r.x2), (0, 299));
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        let r = liveness_crop_rect(0, 0, face(f32::NAN, 1.0, -5.0, f32::INFINITY), f32::NAN);
        assert_eq!(
            r,
            CropRect {
                x1: 0,
                y1: 0,
                x2: 0,
                y2: 0
            }
        );
        let img = RgbImage::new(1, 1);
        assert_eq!(
            liveness_crop(&img, face(0.0, 0.0, 0.0, 0.0), 2.7, 80).len(),
            3 * 80 * 80
        );
        assert_eq!(
            liveness_crop(&RgbImage::new(0, 0), face(0.0, 0.0, 1.0, 1.0), 2.7, 4).len(),
            48
        );
    }

    fn noise(w: u32, h: u32) -> RgbImage {
        let mut s = 0x1234_5678u32;
        RgbImage::from_fn(w, h, |_, _| {
            let mut v = [0u8; 3];
            for c in &mut v {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                *c = s as u8;
            }
            image::Rgb(v)
        })
    }

    #[test]
    fn equal_sizes_are_an_exact_copy() {
        let img = noise(80, 80);
        let out = resize_linear(
            &img,
            CropRect {
                x1: 0,
                y1: 0,
                x2: 79,
                y2: 79,
            },
            80,
            80,
        );
        assert_eq!(out, img);
        // Also for a sub-rectangle.
        let img = noise(200, 150);
        let out = resize_linear(
            &img,
            CropRect {
                x1: 10,
                y1: 20,
                x2: 89,
                y2: 99,
            },
            80,
            80,
        );
        assert_eq!(
            out,
            image::imageops::crop_imm(&img, 10, 20, 80, 80).to_image()
        );
    }

    #[test]
    fn constant_images_stay_constant() {
        for v in [0u8, 1, 77, 128, 254, 255] {
            let img = RgbImage::from_pixel(333, 217, image::Rgb([v, v / 2, 255 - v]));
            for (w, h) in [(80, 80), (37, 120), (500, 3)] {
                let out = resize_linear(
                    &img,
                    CropRect {
                        x1: 3,
                        y1: 4,
                        x2: 300,
                        y2: 211,
                    },
                    w,
                    h,
                );
                assert!(
                    out.pixels().all(|p| p.0 == [v, v / 2, 255 - v]),
                    "{v} {w}x{h}"
                );
            }
        }
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        // OpenCV's exact 2x downscale is INTER_AREA: (sum of 4 + 2) >> 2.
        let img = noise(8, 8);
        let out = resize_linear(
            &img,
            CropRect {
                x1: 0,
                y1: 0,
                x2: 7,
                y2: 7,
            },
            4,
            4,
        );
        for (x, y, p) in out.enumerate_pixels() {
            for c in 0..3 {
                let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| u32::from(img.get_pixel(2 * x + dx, 2 * y + dy)[c]))
                    .sum();
                assert_eq!(u32::from(p[c]), (s + 2) >> 2);
            }
        }
    }

    #[test]
    fn tensor_is_nchw_bgr() {
        let img = RgbImage::from_pixel(100, 100, image::Rgb([10, 20, 30]));
        let t = liveness_crop(&img, face(40.0, 40.0, 20.0, 20.0), 2.7, 80);
        assert_eq!(t.len(), 3 * 6400);
        assert!(t[..6400].iter().all(|&v| v == 30.0));
        assert!(t[6400..12800].iter().all(|&v| v == 20.0));
        assert!(t[12800..].iter().all(|&v| v == 10.0));
    }

    /// The pattern the OpenCV goldens were generated from (RGB).
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([0u32, 1, 2].map(|c| ((x * 37 + y * 91 + c * 53 + x * y * 7) % 256) as u8))
        })
    }

    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    // Goldens from `cv2.resize(img, size)` (default INTER_LINEAR); identical
    // in OpenCV 4.10.0 and 5.0.0 (x86-64 wheels). A Python port of this
    // module also matched both on 150 random sizes bit for bit, where the
    // scalar rounding `(s0*b0 + s1*b1 + 2^21) >> 22` differed in 148.
    #[test]
    fn matches_opencv_downscale() {
        let out = resize_linear(&pattern(23, 17), full_rect(23, 17), 9, 6);
        let expected: [u8; 162] = SMALL;
        assert_eq!(out.as_raw().as_slice(), expected.as_slice());
    }

    #[test]
    fn matches_opencv_upscale() {
        let out = resize_linear(&pattern(23, 17), full_rect(23, 17), 80, 80);
        assert_eq!(fnv1a(out.as_raw().iter().copied()), 0x65be_8f73_7200_ad36);
    }

    #[test]
    fn matches_upstream_crop_and_resize() {
        // Upstream `_get_new_box` + `cv2.resize` on the BGR image, hashed as
        // the NCHW BGR tensor.
        let img = pattern(640, 480);
        let cases = [
            (
                (250.0, 170.0, 120.0, 140.0),
                2.7,
                (148, 51, 472, 429),
                0x9489_6283_41bf_d3e9,
            ),
            (
                (20.0, 300.0, 150.0, 160.0),
                4.0,
                (0, 0, 449, 479),
                0x60dc_8423_a4be_c1a1,
            ),
            (
                (500.0, 10.0, 90.0, 100.0),
                2.7,
                (396, 0, 639, 270),
                0x2981_1b0b_09cb_96ce,
            ),
        ];
        for ((x, y, w, h), scale, (x1, y1, x2, y2), hash) in cases {
            let f = face(x, y, w, h);
            let r = liveness_crop_rect(640, 480, f, scale);
            assert_eq!(r, CropRect { x1, y1, x2, y2 });
            let t = liveness_crop(&img, f, scale, 80);
            assert!(t
                .iter()
                .all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
            assert_eq!(fnv1a(t.iter().map(|&v| v as u8)), hash, "{r:?}");
        }
    }

    fn full_rect(w: u32, h: u32) -> CropRect {
        CropRect {
            x1: 0,
            y1: 0,
            x2: w - 1,
            y2: h - 1,
        }
    }

    const SMALL: [u8; 162] = [
        117, 170, 223, 150, 46, 99, 104, 138, 189, 194, 143, 65, 70, 123, 155, 169, 213, 31, 36,
        89, 142, 147, 200, 75, 184, 55, 108, 134, 187, 91, 104, 136, 146, 202, 84, 116, 143, 160,
        128, 77, 130, 183, 175, 121, 89, 144, 190, 165, 114, 103, 156, 155, 158, 61, 152, 88, 141,
        108, 111, 164, 171, 129, 170, 127, 133, 127, 83, 137, 190, 106, 93, 146, 129, 49, 102, 208,
        91, 108, 165, 161, 131, 169, 139, 76, 140, 122, 125, 88, 141, 182, 142, 136, 123, 90, 143,
        196, 145, 150, 120, 104, 141, 182, 111, 164, 118, 118, 138, 167, 136, 189, 79, 116, 169,
        73, 67, 120, 95, 75, 128, 145, 97, 150, 203, 155, 101, 118, 184, 66, 62, 99, 152, 120, 72,
        125, 121, 187, 57, 106, 205, 102, 155, 145, 198, 40, 147, 190, 113, 103, 157, 210, 82, 123,
        176, 64, 117, 144, 173, 69, 108, 224, 78, 131,
    ];
}

/// Side of the square MiniFASNet input.
pub const INPUT_SIZE: u32 = 80;

pub use facegate_core::SpoofCondition;

/// A face is a spoof when its fused real-face probability is below this.
/// `balanced` is upstream's own decision rule (argmax of the averaged
/// softmax is "real" once its real share passes one half); the other two
/// move the line by 0.25 either way (calibration in docs/models.md).
pub fn threshold(condition: SpoofCondition) -> f32 {
    crate::liveness::threshold(condition)
}

/// The liveness outcome for one face.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SpoofVerdict {
    /// Calibrated score in [0, 1] that the face is live (the Argos
    /// `liveness_score` is this × 100; see `liveness::calibrate`); 0 when
    /// the face could not be judged.
    pub real_probability: f32,
    /// The verdict at the requested sensitivity; always `true` when the
    /// face could not be judged (fail closed).
    pub is_spoof: bool,
    /// Set when the face could not be judged, and why.
    pub unjudgeable: Option<crate::quality::QualityIssue>,
}

impl SpoofVerdict {
    /// The verdict for a judgeable face with calibrated score `real_probability`.
    pub fn new(real_probability: f32, condition: SpoofCondition) -> Self {
        Self {
            real_probability,
            is_spoof: real_probability < crate::liveness::threshold(condition),
            unjudgeable: None,
        }
    }

    /// The verdict for a face that cannot be judged: a spoof, score 0.
    pub fn unjudgeable(issue: crate::quality::QualityIssue) -> Self {
        Self {
            real_probability: 0.0,
            is_spoof: true,
            unjudgeable: Some(issue),
        }
    }
}

#[cfg(test)]
mod condition_tests {
    use super::*;

    #[test]
    fn strict_flags_more_than_balanced_more_than_weak() {
        for p in [0.1, 0.3, 0.6, 0.8, 0.95] {
            let flagged = |c| SpoofVerdict::new(p, c).is_spoof as u8;
            assert!(flagged(SpoofCondition::Strict) >= flagged(SpoofCondition::Balanced));
            assert!(flagged(SpoofCondition::Balanced) >= flagged(SpoofCondition::Weak));
        }
    }
}
