//! Boxes and points. Coordinates are pixels of the analysed image unless a
//! value says otherwise ([`FaceBox::fractions_of`] makes the API's
//! fractions, which the store keeps).

use serde::Serialize;

/// An axis-aligned box: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FaceBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

/// `v / side`, clamped to [0, 1]; 0 for a non-finite value or an empty side
/// (a degenerate detection must not put NaN on the wire or in the store).
fn fraction(v: f32, side: u32) -> f32 {
    if side == 0 || !v.is_finite() {
        return 0.0;
    }
    (v / side as f32).clamp(0.0, 1.0)
}

impl FaceBox {
    /// Width (0 when inverted).
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    /// Height (0 when inverted).
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    /// Area (0 for degenerate boxes).
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Centre point as (x, y).
    pub fn center(&self) -> (f32, f32) {
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &FaceBox) -> f32 {
        let ix = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let iy = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Clamps the box to an image of `width` × `height`.
    pub fn clamp_to(&self, width: u32, height: u32) -> FaceBox {
        let (w, h) = (width as f32, height as f32);
        FaceBox {
            x0: self.x0.clamp(0.0, w),
            y0: self.y0.clamp(0.0, h),
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
        }
    }

    /// Whether `p` lies inside (edges included).
    pub fn contains(&self, p: Point) -> bool {
        p.x >= self.x0 && p.x <= self.x1 && p.y >= self.y0 && p.y <= self.y1
    }

    /// The box as fractions of a `width` × `height` image, each in [0, 1].
    pub fn fractions_of(&self, width: u32, height: u32) -> FaceBox {
        FaceBox {
            x0: fraction(self.x0, width),
            y0: fraction(self.y0, height),
            x1: fraction(self.x1, width),
            y1: fraction(self.y1, height),
        }
    }
}

/// A point.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Point {
    /// Horizontal, from the left.
    pub x: f32,
    /// Vertical, from the top.
    pub y: f32,
}

impl Point {
    /// The point as fractions of a `width` × `height` image, each in [0, 1].
    pub fn fractions_of(&self, width: u32, height: u32) -> Point {
        Point {
            x: fraction(self.x, width),
            y: fraction(self.y, height),
        }
    }
}

/// The five landmarks in anatomical order: `left_eye` is the subject's
/// right eye, which is on the image's left in an upright frontal photo (the
/// same for the lips). Pose and alignment need this order; the API wants the
/// points ordered by x instead, see [`FivePoints::ordered_by_x`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FivePoints {
    /// The subject's right eye (image left when upright and frontal).
    pub left_eye: Point,
    /// The subject's left eye.
    pub right_eye: Point,
    /// Nose tip.
    pub nose: Point,
    /// Mouth corner on the subject's right.
    pub left_lip: Point,
    /// Mouth corner on the subject's left.
    pub right_lip: Point,
}

impl FivePoints {
    /// The API's convention: `left_eye` is the eye with the smaller x in the
    /// image, likewise `left_lip`.
    pub fn ordered_by_x(&self) -> Self {
        let by_x = |a: Point, b: Point| if a.x <= b.x { (a, b) } else { (b, a) };
        let (left_eye, right_eye) = by_x(self.left_eye, self.right_eye);
        let (left_lip, right_lip) = by_x(self.left_lip, self.right_lip);
        Self {
            left_eye,
            right_eye,
            nose: self.nose,
            left_lip,
            right_lip,
        }
    }

    /// The points in field order.
    pub fn as_array(&self) -> [Point; 5] {
        [
            self.left_eye,
            self.right_eye,
            self.nose,
            self.left_lip,
            self.right_lip,
        ]
    }

    /// Every point as fractions of a `width` × `height` image.
    pub fn fractions_of(&self, width: u32, height: u32) -> FivePoints {
        let f = |p: Point| p.fractions_of(width, height);
        FivePoints {
            left_eye: f(self.left_eye),
            right_eye: f(self.right_eye),
            nose: f(self.nose),
            left_lip: f(self.left_lip),
            right_lip: f(self.right_lip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_clamp_and_never_carry_nan() {
        let b = FaceBox {
            x0: -5.0,
            y0: 50.0,
            x1: f32::NAN,
            y1: 250.0,
        };
        assert_eq!(
            b.fractions_of(100, 200),
            FaceBox {
                x0: 0.0,
                y0: 0.25,
                x1: 0.0,
                y1: 1.0
            }
        );
        assert_eq!(
            Point { x: 1.0, y: 1.0 }.fractions_of(0, 0),
            Point::default()
        );
    }

    #[test]
    fn by_x_order_swaps_mirrored_points_only() {
        let p = |x| Point { x, y: 0.0 };
        let pts = FivePoints {
            left_eye: p(9.0),
            right_eye: p(1.0),
            nose: p(5.0),
            left_lip: p(2.0),
            right_lip: p(8.0),
        };
        let o = pts.ordered_by_x();
        assert_eq!(o.as_array().map(|q| q.x), [1.0, 9.0, 5.0, 2.0, 8.0]);
    }
}
