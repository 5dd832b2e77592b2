//! Head pose (yaw, pitch, roll in degrees) from the five landmarks.
//!
//! A rigid 3-D template of the same five points is fitted to the landmarks
//! under scaled orthographic projection (least squares), and the rotation is
//! decomposed as `R = Rz(roll) · Ry(yaw) · Rx(pitch)`. With roll outermost, an
//! in-plane rotation of the photo by θ changes roll by exactly θ and leaves
//! yaw and pitch untouched.
//!
//! Conventions (image axes: x right, y down, z away from the camera):
//! * roll > 0: the face is rotated clockwise in the image;
//! * yaw > 0: the nose points to the image's right (the subject turns to
//!   their left);
//! * pitch > 0: the nose points down (the subject looks down).

pub use facegate_core::Pose;

use crate::geometry::FivePoints;

/// Mean-face 3-D positions (arbitrary units, x right, y down, z away from
/// the camera) of the API's five points: eye centres, nose tip, mouth
/// corners. Proportions follow common anthropometric head models.
const TEMPLATE: [[f64; 3]; 5] = [
    [-32.0, -34.0, 28.0],
    [32.0, -34.0, 28.0],
    [0.0, 0.0, 0.0],
    [-26.0, 30.0, 24.0],
    [26.0, 30.0, 24.0],
];

/// Estimates the head pose; `None` when the landmarks are degenerate.
pub fn estimate(landmarks: &FivePoints) -> Option<Pose> {
    let pts = landmarks.as_array();
    let n = pts.len() as f64;
    let mean2 = pts.iter().fold([0.0; 2], |m, p| {
        [m[0] + p.x as f64 / n, m[1] + p.y as f64 / n]
    });
    let mean3 = TEMPLATE.iter().fold([0.0; 3], |m, q| {
        [m[0] + q[0] / n, m[1] + q[1] / n, m[2] + q[2] / n]
    });
    // Normal equations: A = (Σ p qᵀ)(Σ q qᵀ)⁻¹ with centred points.
    let mut pq = [[0.0; 3]; 2];
    let mut qq = [[0.0; 3]; 3];
    for (p, q) in pts.iter().zip(TEMPLATE.iter()) {
        let p = [p.x as f64 - mean2[0], p.y as f64 - mean2[1]];
        let q = [q[0] - mean3[0], q[1] - mean3[1], q[2] - mean3[2]];
        for i in 0..3 {
            for j in 0..3 {
                qq[i][j] += q[i] * q[j];
            }
            pq[0][i] += p[0] * q[i];
            pq[1][i] += p[1] * q[i];
        }
    }
    let inv = invert3(&qq)?;
    let row = |r: usize| -> [f64; 3] {
        let mut out = [0.0; 3];
        for (j, o) in out.iter_mut().enumerate() {
            *o = (0..3).map(|k| pq[r][k] * inv[k][j]).sum();
        }
        out
    };
    let (a1, a2) = (row(0), row(1));
    // Nearest pair of orthonormal rows in the polar sense, (A·Aᵀ)^(-1/2)·A.
    // Unlike normalising each row on its own, this commutes with rotating
    // the image, which is what keeps roll exact under in-plane rotation.
    let m = [[dot(a1, a1), dot(a1, a2)], [dot(a1, a2), dot(a2, a2)]];
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if !(det.is_finite() && det > 1e-12) {
        return None;
    }
    let sd = det.sqrt();
    let t = (m[0][0] + m[1][1] + 2.0 * sd).sqrt();
    // sqrt(M) = (M + √det·I) / t, and its inverse in closed form.
    let root = [
        [(m[0][0] + sd) / t, m[0][1] / t],
        [m[1][0] / t, (m[1][1] + sd) / t],
    ];
    let rdet = root[0][0] * root[1][1] - root[0][1] * root[1][0];
    let inv_root = [
        [root[1][1] / rdet, -root[0][1] / rdet],
        [-root[1][0] / rdet, root[0][0] / rdet],
    ];
    let r1 = normalize(add(scale(a1, inv_root[0][0]), scale(a2, inv_root[0][1])))?;
    let r2 = normalize(add(scale(a1, inv_root[1][0]), scale(a2, inv_root[1][1])))?;
    let r3 = cross(r1, r2);
    let roll = r2[0].atan2(r1[0]);
    let yaw = (-r3[0]).clamp(-1.0, 1.0).asin();
    let pitch = r3[1].atan2(r3[2]);
    let deg = |v: f64| v.to_degrees() as f32;
    Some(Pose {
        yaw: -deg(yaw),
        pitch: deg(pitch),
        roll: deg(roll),
    })
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn normalize(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-9).then(|| scale(a, 1.0 / n))
}

fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adj = [
        [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
        [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
        [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
    ];
    Some(adj.map(|r| r.map(|v| v / det)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Point;

    /// Projects the template rotated by R = Rz(roll)·Ry(yaw)·Rx(pitch).
    fn project(yaw: f64, pitch: f64, roll: f64) -> FivePoints {
        let (y, p, r) = (-yaw.to_radians(), pitch.to_radians(), roll.to_radians());
        let rx = [
            [1.0, 0.0, 0.0],
            [0.0, p.cos(), -p.sin()],
            [0.0, p.sin(), p.cos()],
        ];
        let ry = [
            [y.cos(), 0.0, y.sin()],
            [0.0, 1.0, 0.0],
            [-y.sin(), 0.0, y.cos()],
        ];
        let rz = [
            [r.cos(), -r.sin(), 0.0],
            [r.sin(), r.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| {
            let mut o = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    o[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
                }
            }
            o
        };
        let rot = mul(rz, mul(ry, rx));
        let pts: Vec<Point> = TEMPLATE
            .iter()
            .map(|q| Point {
                x: (200.0 + 2.0 * dot(rot[0], *q)) as f32,
                y: (150.0 + 2.0 * dot(rot[1], *q)) as f32,
            })
            .collect();
        FivePoints {
            left_eye: pts[0],
            right_eye: pts[1],
            nose: pts[2],
            left_lip: pts[3],
            right_lip: pts[4],
        }
    }

    #[test]
    fn recovers_known_poses() {
        for (yaw, pitch, roll) in [
            (0.0, 0.0, 0.0),
            (20.0, 0.0, 0.0),
            (0.0, -15.0, 0.0),
            (10.0, 12.0, 30.0),
            (-25.0, 5.0, -40.0),
        ] {
            let pose = estimate(&project(yaw, pitch, roll)).unwrap();
            assert!((pose.yaw as f64 - yaw).abs() < 0.5, "{pose:?} vs yaw {yaw}");
            assert!(
                (pose.pitch as f64 - pitch).abs() < 0.5,
                "{pose:?} vs pitch {pitch}"
            );
            assert!(
                (pose.roll as f64 - roll).abs() < 0.5,
                "{pose:?} vs roll {roll}"
            );
        }
    }

    #[test]
    fn sign_conventions_match_the_documentation() {
        let rel = |lm: FivePoints| {
            let eyes = (lm.left_eye.x + lm.right_eye.x) / 2.0;
            let eyes_y = (lm.left_eye.y + lm.right_eye.y) / 2.0;
            (lm.nose.x - eyes, lm.nose.y - eyes_y)
        };
        let (x0, y0) = rel(project(0.0, 0.0, 0.0));
        // Positive yaw: the nose moves to the image's right.
        let turned = project(15.0, 0.0, 0.0);
        assert!(rel(turned).0 > x0 && estimate(&turned).unwrap().yaw > 0.0);
        // Positive pitch: the nose moves down relative to the eyes.
        let down = project(0.0, 15.0, 0.0);
        assert!(rel(down).1 > y0 && estimate(&down).unwrap().pitch > 0.0);
        // Positive roll: clockwise, the right eye lower than the left.
        let tilted = project(0.0, 0.0, 15.0);
        assert!(tilted.right_eye.y > tilted.left_eye.y && estimate(&tilted).unwrap().roll > 0.0);
    }

    #[test]
    fn in_plane_rotation_changes_only_roll_exactly() {
        let base = project(12.0, -8.0, 5.0);
        let b = estimate(&base).unwrap();
        for theta in [-90.0f32, -33.0, 17.0, 60.0] {
            let (s, c) = theta.to_radians().sin_cos();
            let rot = |p: Point| Point {
                x: 300.0 + c * (p.x - 200.0) - s * (p.y - 150.0),
                y: 100.0 + s * (p.x - 200.0) + c * (p.y - 150.0),
            };
            let lm = FivePoints {
                left_eye: rot(base.left_eye),
                right_eye: rot(base.right_eye),
                nose: rot(base.nose),
                left_lip: rot(base.left_lip),
                right_lip: rot(base.right_lip),
            };
            let r = estimate(&lm).unwrap();
            assert!(
                (r.roll - b.roll - theta).abs() < 1e-3,
                "{r:?} {b:?} {theta}"
            );
            assert!((r.yaw - b.yaw).abs() < 1e-3 && (r.pitch - b.pitch).abs() < 1e-3);
        }
    }

    #[test]
    fn degenerate_landmarks_give_none() {
        assert!(estimate(&FivePoints::default()).is_none());
    }
}
