//! [`FaceAnalyzer`] for the real vision engine, and loading it from the
//! configured model directory and runtime.

use std::path::Path;
use std::sync::Arc;

use facegate_core::{Face, Liveness, RuntimeKind, SpoofCondition};
use facegate_image::RgbImage;
use facegate_vision::batch::Batching;
use facegate_vision::calibration::Calibration;
use facegate_vision::embedder::Embedder;
use facegate_vision::pipeline::{AnalyzeOptions, Engine, EngineOptions, FaceSelection};
use facegate_vision::spoof::SpoofVerdict;

use crate::analyzer::{AnalyzeRequest, AnalyzerError, BatchCounts, FaceAnalyzer};

fn liveness(v: SpoofVerdict) -> Liveness {
    Liveness {
        real_probability: v.real_probability,
        is_spoof: v.is_spoof,
        unjudgeable: v.unjudgeable,
    }
}

/// The engine's errors, split into what the input caused and what the
/// server did. `InvalidInput` is the engine's "this input is unusable":
/// per face, an alignment or mask crop that cannot be made (non-finite
/// landmarks, a degenerate box). Everything else is the engine's own
/// failure: models, runtime, I/O.
fn err(e: facegate_vision::VisionError) -> AnalyzerError {
    use facegate_vision::VisionError as V;
    match e {
        V::InvalidInput(_) => AnalyzerError::Face(e.to_string()),
        V::RuntimeUnavailable(_)
        | V::ModelLoad { .. }
        | V::Inference { .. }
        | V::InvalidModel(_)
        | V::MissingModel(_)
        | V::Io(_) => AnalyzerError::Engine(e.to_string()),
    }
}

/// The embedder whose version string is `version`.
fn embedder_of(version: &str) -> Result<Embedder, AnalyzerError> {
    Embedder::from_version(version)
        .ok_or_else(|| AnalyzerError::Engine(format!("unknown embedding model {version}")))
}

/// The similarity calibration of model `version`. The service only asks
/// for loaded models; anything else gets the first embedder's.
fn calibration_of(version: &str) -> &'static Calibration {
    Embedder::from_version(version)
        .unwrap_or(Embedder::ALL[0])
        .calibration()
}

/// How the engine spends the machine (config keys `lone_request_threads`,
/// `batch_max`, `batch_window_ms`); the default is the engine's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineTuning {
    /// Threads a network running alone may use; 0: every core.
    pub lone_run_threads: usize,
    /// How concurrent requests' faces are batched; `None`: the runtime's
    /// default.
    pub batching: Option<Batching>,
}

/// Loads the engine with `embedders` (the first is the preferred one;
/// blocking, seconds to minutes depending on runtime).
pub fn load_engine(
    model_dir: &Path,
    runtime: RuntimeKind,
    embedders: &[Embedder],
    tuning: EngineTuning,
) -> Result<Arc<dyn FaceAnalyzer>, AnalyzerError> {
    let mut options = EngineOptions::new(model_dir, runtime)
        .with_embedders(embedders)
        .with_lone_run_threads(tuning.lone_run_threads);
    options.batching = tuning.batching;
    let engine = Engine::load(&options).map_err(|e| AnalyzerError::Engine(e.to_string()))?;
    tracing::info!(
        backend = engine.backend().name(),
        models = ?engine.embedders().iter().map(|e| e.version()).collect::<Vec<_>>(),
        "models loaded"
    );
    Ok(Arc::new(engine))
}

impl FaceAnalyzer for Engine {
    fn analyze(
        &self,
        image: &RgbImage,
        request: &AnalyzeRequest,
    ) -> Result<Vec<Face>, AnalyzerError> {
        let embedder = match &request.embedding {
            Some(version) => embedder_of(version)?,
            None => self.default_embedder(),
        };
        let options = AnalyzeOptions {
            embedding: request.embedding.is_some(),
            orientation: request.orientation,
            mask: request.mask,
            spoofing: request.spoofing,
        };
        let selection = FaceSelection {
            faces: request.max_faces.unwrap_or(usize::MAX),
            embeddings: request.max_embeddings.unwrap_or(usize::MAX),
        };
        let (faces, times) = self
            .serve(request.lane, || {
                self.analyze_selected(image, &options, embedder, selection)
            })
            .map_err(err)?;
        for (stage, spent) in times.by_stage() {
            if !spent.is_zero() {
                metrics::histogram!(crate::telemetry::STAGE_DURATION, "stage" => stage)
                    .record(spent.as_secs_f64());
            }
        }
        Ok(faces
            .into_iter()
            .map(|f| Face {
                quality_issue: request
                    .quality_gate
                    .then(|| self.face_quality(image, &f.bbox, &f.landmarks).issue())
                    .flatten(),
                bbox: f.bbox,
                landmarks: f.landmarks,
                confidence: f.confidence,
                pose: f.pose,
                mask: f.mask,
                liveness: f.spoof.map(liveness),
                embedding: f.embedding,
            })
            .collect())
    }

    fn spoof_aligned(
        &self,
        crop: &RgbImage,
        condition: SpoofCondition,
        lane: u64,
    ) -> Result<Liveness, AnalyzerError> {
        self.serve(lane, || Engine::spoof_aligned(self, crop, condition))
            .map(liveness)
            .map_err(err)
    }

    fn models(&self) -> Vec<String> {
        self.embedders()
            .into_iter()
            .map(|e| e.version().to_string())
            .collect()
    }

    fn runtime(&self) -> &'static str {
        self.backend().name()
    }

    fn batch_counts(&self) -> Option<BatchCounts> {
        self.batches().then(|| {
            let stats = self.batch_stats();
            BatchCounts {
                runs: stats.batches,
                faces: stats.inputs,
                largest: stats.largest,
            }
        })
    }

    fn similarity(&self, model: &str, cosine: f32) -> f32 {
        calibration_of(model).similarity(cosine)
    }

    fn cosine_for_similarity(&self, model: &str, similarity: f32) -> f32 {
        calibration_of(model).cosine_for_similarity(similarity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_vision::VisionError;

    #[test]
    fn input_failures_are_the_faces_fault_engine_failures_are_internal() {
        assert!(matches!(
            err(VisionError::InvalidInput(
                "mask: non-finite landmark".into()
            )),
            AnalyzerError::Face(_)
        ));
        for e in [
            VisionError::RuntimeUnavailable("x".into()),
            VisionError::ModelLoad {
                model: "m".into(),
                reason: "r".into(),
            },
            VisionError::Inference {
                model: "m".into(),
                reason: "r".into(),
            },
            VisionError::InvalidModel("x".into()),
            VisionError::MissingModel("x".into()),
            VisionError::Io(std::io::Error::other("x")),
        ] {
            assert!(matches!(err(e), AnalyzerError::Engine(_)));
        }
    }
}
