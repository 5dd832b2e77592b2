//! Passive liveness for one detected face: the quality gate, MiniFASNet V2 +
//! V1SE on their crops, and the calibrated score the API reports.

use image::RgbImage;

use crate::error::{Result, VisionError};
use crate::geometry::{BoxF, FivePoints};
use crate::pipeline::Engine;
use crate::pose;
use crate::quality::{self, FaceQuality};
use crate::spoof::{self, BoxXYWH, SpoofCondition, SpoofVerdict};

/// One of the two MiniFASNet models.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoofModel {
    /// MiniFASNetV2, crop scale 2.7.
    V2,
    /// MiniFASNetV1SE, crop scale 4.0.
    V1se,
}

impl SpoofModel {
    /// Upstream's crop scale for this model.
    pub fn scale(self) -> f32 {
        match self {
            SpoofModel::V2 => 2.7,
            SpoofModel::V1se => 4.0,
        }
    }
}

impl Engine {
    /// The softmax (3 classes, class 1 = real) of one MiniFASNet model on a
    /// prepared `[1, 3, 80, 80]` BGR input. For evaluation tools.
    #[doc(hidden)]
    pub fn spoof_softmax(&self, model: SpoofModel, input: &[f32]) -> Result<Vec<f32>> {
        let m = match model {
            SpoofModel::V2 => &self.spoof_v2,
            SpoofModel::V1se => &self.spoof_v1se,
        };
        m.run(input)?
            .into_iter()
            .next()
            .map(|t| t.data)
            .filter(|d| d.len() == 3)
            .ok_or_else(|| VisionError::InvalidModel("liveness output".into()))
    }
}

/// A face is a spoof when its calibrated score
/// ([`LivenessEvidence::real_probability`]) is below this. The levels sit
/// at fixed points of the score because the score itself is calibrated
/// (see [`calibrate`]); balanced is 0.5, so the Argos score (× 100) agrees
/// with balanced at Argos' threshold 50.
pub fn threshold(condition: SpoofCondition) -> f32 {
    match condition {
        SpoofCondition::Weak => 0.25,
        SpoofCondition::Balanced => 0.5,
        SpoofCondition::Strict => 0.75,
    }
}

/// Everything the liveness stage measured on one face.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LivenessEvidence {
    /// The quality gate's measures.
    pub quality: FaceQuality,
    /// MiniFASNetV2's real-class probability on its crop.
    pub v2: f32,
    /// MiniFASNetV1SE's real-class probability on its crop.
    pub v1se: f32,
    /// The two averaged (upstream's fused score).
    pub fused: f32,
    /// The calibrated score reported as the real probability, [0, 1]
    /// (0 when the face cannot be judged).
    pub real_probability: f32,
}

impl LivenessEvidence {
    /// The verdict at `condition`: a spoof when the face cannot be judged
    /// (fail closed) or its score is below the level's threshold.
    pub fn verdict(&self, condition: SpoofCondition) -> SpoofVerdict {
        match self.quality.issue() {
            Some(issue) => SpoofVerdict::unjudgeable(issue),
            None => SpoofVerdict::new(self.real_probability, condition),
        }
    }
}

/// Upstream's face box for a YuNet box. MiniFASNet was trained on crops
/// around the boxes of its own RetinaFace-style detector: a tight, square,
/// forehead-to-chin box, about 6 % larger than dlib's HOG box
/// (shared/models/minifasnet/README.md). YuNet's box is taller (it covers the
/// forehead) and the crop keeps the box's aspect ratio, so feeding it as is
/// squeezes the face vertically in the 80 × 80 input. The square here is
/// the dlib-equivalent box the landmark stage already uses (YuNet's width,
/// centred 6.5 % of the height lower; fitted on t1.jpg, not on liveness
/// data) enlarged by 6 %. On the development set this alone takes NUAA's
/// live refusals from 10.8 % to 0 (docs/models.md).
pub fn upstream_box(b: &BoxF) -> BoxXYWH {
    let side = 1.06 * b.width();
    let (cx, cy) = b.center();
    let cy = cy + 0.065 * b.height();
    BoxXYWH {
        x: cx - side / 2.0,
        y: cy - side / 2.0,
        w: side,
        h: side,
    }
}

/// The calibrated score for upstream's fused probability.
pub fn calibrate(fused: f32) -> f32 {
    fused.clamp(0.0, 1.0)
}

impl Engine {
    /// The quality gate's measures for a face (its detector box and five
    /// points); [`FaceQuality::issue`] says whether it can be judged. The
    /// same gate liveness applies, for callers (e.g. registration) that
    /// want it on its own.
    pub fn face_quality(
        &self,
        image: &RgbImage,
        bbox: &BoxF,
        landmarks: &FivePoints,
    ) -> FaceQuality {
        quality::measure(image, bbox, landmarks, pose::estimate(landmarks).as_ref())
    }

    /// Everything liveness measures on a detected face.
    pub fn liveness_evidence(
        &self,
        image: &RgbImage,
        bbox: &BoxF,
        landmarks: &FivePoints,
    ) -> Result<LivenessEvidence> {
        let quality = self.face_quality(image, bbox, landmarks);
        let xywh = upstream_box(bbox);
        let mut real = [0.0f32; 2];
        for (r, model) in real.iter_mut().zip([SpoofModel::V2, SpoofModel::V1se]) {
            let input = spoof::liveness_crop(image, xywh, model.scale(), spoof::INPUT_SIZE);
            *r = self.spoof_softmax(model, &input)?[1];
        }
        let fused = (real[0] + real[1]) / 2.0;
        Ok(LivenessEvidence {
            quality,
            v2: real[0],
            v1se: real[1],
            fused,
            real_probability: if quality.issue().is_some() {
                0.0
            } else {
                calibrate(fused)
            },
        })
    }

    /// Liveness of a detected face at `condition`: the quality gate, then
    /// the calibrated MiniFASNet score.
    pub fn liveness(
        &self,
        image: &RgbImage,
        bbox: &BoxF,
        landmarks: &FivePoints,
        condition: SpoofCondition,
    ) -> Result<SpoofVerdict> {
        Ok(self
            .liveness_evidence(image, bbox, landmarks)?
            .verdict(condition))
    }
}
