//! Liveness: NHN spoofing per face (or on an aligned crop) and the Argos
//! score.

use facegate_core::{Face, Liveness, SpoofCondition};
use facegate_image::Limits;

use super::{FaceOptions, ImageInput, Lane, Result, Service};
use crate::analyzer::AnalyzeRequest;
use crate::error::{ImageRole, ServiceError};

/// Side of the face crop `aligned: true` expects.
pub const ALIGNED_SIDE: u32 = 224;

/// What a spoofing request found.
#[derive(Debug, Clone)]
pub enum SpoofingOutcome {
    /// The verdict on an aligned crop (the whole image is the face).
    Aligned(Liveness),
    /// Every detected face, each with its verdict.
    Faces(Vec<Face>),
}

impl Service {
    /// Spoof detection per face, or on an aligned 224x224 crop.
    pub async fn spoofing(
        &self,
        image: ImageInput,
        aligned: bool,
        condition: SpoofCondition,
        lane: Lane,
    ) -> Result<SpoofingOutcome> {
        if aligned {
            // An aligned crop of the wrong size is -45070 whatever its size,
            // so the general 80 px minimum does not apply before that check.
            let limits = Limits {
                min_side: 1,
                ..self.options.limits
            };
            let analyzer = self.analyzer.clone();
            let verdict = self
                .images
                .with_image(image, ImageRole::Image, limits, move |crop| {
                    let (w, h) = crop.dimensions();
                    if (w, h) != (ALIGNED_SIDE, ALIGNED_SIDE) {
                        return Err(ServiceError::AlignedSize {
                            expected: ALIGNED_SIDE,
                            width: w,
                            height: h,
                        });
                    }
                    let started = std::time::Instant::now();
                    let verdict = analyzer.spoof_aligned(crop, condition, lane.0);
                    metrics::histogram!(
                        crate::telemetry::ANALYSIS_DURATION,
                        "operation" => "spoof_aligned"
                    )
                    .record(crate::telemetry::seconds_since(started));
                    Ok(verdict?)
                })
                .await?;
            return Ok(SpoofingOutcome::Aligned(verdict));
        }
        let opts = FaceOptions {
            orientation: false,
            mask: false,
            spoofing: Some(condition),
            lane,
        };
        let faces = self
            .analyze(image, ImageRole::Image, opts.request(None))
            .await?;
        Ok(SpoofingOutcome::Faces(faces))
    }

    /// Argos liveness of the largest face: its verdict, whose score × 100
    /// is the `liveness_score`.
    pub async fn liveness_score(&self, image: ImageInput, lane: Lane) -> Result<Liveness> {
        let request = AnalyzeRequest {
            embedding: None,
            orientation: false,
            mask: false,
            spoofing: Some(SpoofCondition::Balanced),
            quality_gate: false,
            // The score is the largest face's.
            max_faces: Some(1),
            max_embeddings: None,
            lane: lane.0,
        };
        let faces = self.analyze(image, ImageRole::Image, request).await?;
        let face = faces.first().ok_or(ServiceError::NoFace("the image"))?;
        face.liveness
            .ok_or_else(|| ServiceError::Internal("analyzer returned no liveness".into()))
    }
}
