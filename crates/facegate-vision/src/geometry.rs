//! Pixel-space geometry shared by every stage.

/// An axis-aligned box in pixels of the (orientation-corrected) image.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct BoxF {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BoxF {
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn center(&self) -> (f32, f32) {
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }
    /// Intersection over union.
    pub fn iou(&self, other: &BoxF) -> f32 {
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
    pub fn clamp_to(&self, width: u32, height: u32) -> BoxF {
        let (w, h) = (width as f32, height as f32);
        BoxF {
            x0: self.x0.clamp(0.0, w),
            y0: self.y0.clamp(0.0, h),
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
        }
    }
    pub fn contains(&self, p: Point) -> bool {
        p.x >= self.x0 && p.x <= self.x1 && p.y >= self.y0 && p.y <= self.y1
    }
}

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// The five landmarks in anatomical order: `left_eye` is the subject's
/// right eye, which is on the image's left in an upright frontal photo (the
/// same for the lips). Pose and alignment need this order; the API wants the
/// points ordered by x instead, see [`FivePoints::ordered_by_x`].
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct FivePoints {
    pub left_eye: Point,
    pub right_eye: Point,
    pub nose: Point,
    pub left_lip: Point,
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

    pub fn as_array(&self) -> [Point; 5] {
        [
            self.left_eye,
            self.right_eye,
            self.nose,
            self.left_lip,
            self.right_lip,
        ]
    }
}
