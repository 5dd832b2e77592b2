//! The application services behind all three surfaces, one use case per
//! method, split by area: [`groups`], [`faces`] (detect, register, list,
//! delete), [`matching`] (search, compare, verify) and [`liveness`];
//! [`images`] turns client images into pixels under the CPU and memory
//! admission rules. Nothing here knows about HTTP: surfaces parse the wire
//! format into the typed requests below, call one method, and format the
//! result.
//!
//! Faces come back as [`Face`]s with their geometry in fractions of the
//! image (the API's unit).

mod faces;
mod groups;
pub mod images;
mod liveness;
mod matching;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use facegate_core::{Face, SpoofCondition};
use facegate_image::{FetchPolicy, Limits};
use facegate_store::{FaceRecord, Gallery, StoreError};

use crate::analyzer::{AnalyzeRequest, BatchCounts, FaceAnalyzer};
use crate::error::{ImageRole, ServiceError};
use crate::telemetry;
pub use faces::{RegisterOutcome, RegisterRequest};
use images::ImageAdmission;
pub use images::{ImageInput, DECODE_WAIT};
pub use liveness::{SpoofingOutcome, ALIGNED_SIDE};
pub use matching::{CompareOutcome, SearchOutcome, SearchParams, VerifyOutcome};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Most faces one registration may add.
pub const MAX_REGISTER_LIMIT: i64 = facegate_core::MAX_FACES as i64;

/// A group of a tenant, as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The tenant's appKey.
    pub tenant: String,
    /// The group id from the path.
    pub group_id: String,
}

/// A registered face, as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceRef {
    /// Its group.
    pub group: GroupRef,
    /// The face id from the path.
    pub face_id: String,
}

/// Whose work an analysis is: the vision engine batches concurrent
/// requests' faces taking lanes in turn, so one tenant's burst cannot crowd
/// out another's requests. Lane 0 is for work on no tenant's behalf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Lane(pub u64);

impl Lane {
    /// The lane of the tenant whose appKey is `app_key`.
    pub fn of_tenant(app_key: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        app_key.hash(&mut h);
        Lane(h.finish())
    }
}

/// Per-face options of detect, register, search, compare and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceOptions {
    /// Report `orientation`.
    pub orientation: bool,
    /// Report `mask`.
    pub mask: bool,
    /// Report `spoofing`, at this sensitivity.
    pub spoofing: Option<SpoofCondition>,
    /// On whose behalf the faces are analysed.
    pub lane: Lane,
}

impl Default for FaceOptions {
    /// The API's defaults: orientation and mask on, spoofing off.
    fn default() -> Self {
        FaceOptions {
            orientation: true,
            mask: true,
            spoofing: None,
            lane: Lane::default(),
        }
    }
}

impl FaceOptions {
    /// Applies the API defaults (orientation and mask on, spoofing off,
    /// condition balanced) and validates `spoofingCondition`.
    pub fn from_wire(
        orientation: Option<bool>,
        mask: Option<bool>,
        spoofing: Option<bool>,
        condition: Option<&str>,
    ) -> Result<Self> {
        let condition = parse_condition(condition)?;
        Ok(FaceOptions {
            orientation: orientation.unwrap_or(true),
            mask: mask.unwrap_or(true),
            spoofing: spoofing.unwrap_or(false).then_some(condition),
            lane: Lane::default(),
        })
    }

    /// The same options, analysed in `lane`.
    pub fn in_lane(self, lane: Lane) -> Self {
        Self { lane, ..self }
    }

    fn request(self, embedding: Option<&str>) -> AnalyzeRequest {
        AnalyzeRequest {
            embedding: embedding.map(str::to_string),
            orientation: self.orientation,
            mask: self.mask,
            spoofing: self.spoofing,
            quality_gate: false,
            max_faces: None,
            max_embeddings: None,
            lane: self.lane.0,
        }
    }

    /// A request for the largest face alone, embedded with `embedding`
    /// (search, verify, compare's source).
    fn largest_face(self, embedding: &str) -> AnalyzeRequest {
        AnalyzeRequest {
            max_faces: Some(1),
            ..self.request(Some(embedding))
        }
    }
}

/// `spoofingCondition`: absent means balanced; anything but the three
/// names is InvalidParam.
pub fn parse_condition(condition: Option<&str>) -> Result<SpoofCondition> {
    match condition {
        None => Ok(SpoofCondition::Balanced),
        Some(s) => SpoofCondition::parse(s).ok_or_else(|| {
            ServiceError::invalid("spoofingCondition must be weak, balanced or strict")
        }),
    }
}

/// A registered face with its similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMatch {
    /// The registered face.
    pub face: FaceRecord,
    /// Similarity 0-100.
    pub similarity: f32,
}

/// The face details `/detect` reports for an already decoded image, with
/// the faces' embeddings when `embedding` names a model (for `facegate
/// detect` and `facegate compare`, which run without a server).
pub fn analyze_offline(
    analyzer: &dyn FaceAnalyzer,
    image: &facegate_image::RgbImage,
    opts: FaceOptions,
    embedding: Option<&str>,
) -> Result<Vec<Face>> {
    let (w, h) = image.dimensions();
    Ok(analyzer
        .analyze(image, &opts.request(embedding))?
        .iter()
        .map(|f| f.fractions_of(w, h))
        .collect())
}

/// Settings of a [`Service`].
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Image size bounds.
    pub limits: Limits,
    /// URL download policy.
    pub fetch: FetchPolicy,
    /// Group quota.
    pub max_faces_per_group: u64,
    /// How many CPU-heavy jobs (decode, inference) run at once.
    pub cpu_slots: usize,
    /// Bytes all images being decoded at once may occupy.
    pub decode_budget: u64,
    /// Model version of new groups and compare; `None`: the analyzer's
    /// preferred model.
    pub default_model: Option<String>,
    /// Registration refuses faces the liveness quality gate refuses (too
    /// small, turned, blurred, badly exposed): off by default, as the
    /// vendor API registers any detected face.
    pub register_quality_gate: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            limits: Limits::default(),
            fetch: FetchPolicy::default(),
            max_faces_per_group: crate::config::DEFAULT_MAX_FACES_PER_GROUP,
            cpu_slots: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            decode_budget: facegate_image::default_decode_budget(),
            default_model: None,
            register_quality_gate: false,
        }
    }
}

/// What `/metrics` samples from a running service: cheap, in-memory reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    /// Groups held, all tenants.
    pub groups: u64,
    /// Faces held, all tenants and groups.
    pub faces: u64,
    /// The PostgreSQL change listener's state; `None` on SQLite.
    pub listener_connected: Option<bool>,
    /// Decode memory reserved right now, bytes.
    pub decode_in_use: u64,
    /// The decode memory budget, bytes.
    pub decode_budget: u64,
    /// Decoded images in memory right now.
    pub decoded_images: usize,
    /// The inference runtime.
    pub runtime: &'static str,
    /// The embedding models loaded.
    pub models: Vec<String>,
    /// Cross-request batching so far; `None` when the runtime does not batch.
    pub batches: Option<BatchCounts>,
}

/// The service: an analyzer, a gallery and the rules between them.
pub struct Service {
    analyzer: Arc<dyn FaceAnalyzer>,
    gallery: Arc<Gallery>,
    options: ServiceOptions,
    images: ImageAdmission,
}

/// Outside create-group, a group id that breaks the id rule names no group
/// there is: NotFoundGroupError, exactly as for any other missing group.
/// (Seed 003 lists InvalidGroupID for create-group only; every other group
/// route lists NotFoundGroupError.)
fn in_existing_group(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Store(StoreError::InvalidGroupId) => {
            ServiceError::Store(StoreError::GroupNotFound)
        }
        other => other,
    }
}

fn check_range(name: &str, v: i64, lo: i64, hi: i64) -> Result<usize> {
    if v < lo || v > hi {
        return Err(ServiceError::invalid(format!(
            "{name} must be between {lo} and {hi}"
        )));
    }
    Ok(v as usize)
}

impl Service {
    /// Wires an analyzer and a gallery together.
    pub fn new(
        analyzer: Arc<dyn FaceAnalyzer>,
        gallery: Arc<Gallery>,
        options: ServiceOptions,
    ) -> Self {
        Service {
            analyzer,
            gallery,
            images: ImageAdmission::new(options.fetch, options.cpu_slots, options.decode_budget),
            options,
        }
    }

    /// Decoded images in memory right now: never more than `cpu_slots`,
    /// however many requests are waiting (for tests and monitoring).
    pub fn decoded_images(&self) -> usize {
        self.images.decoded_images()
    }

    /// Totals, memory and engine state for monitoring.
    pub fn stats(&self) -> ServiceStats {
        let (groups, faces) = self.gallery.totals();
        let (decode_in_use, decode_budget) = self.images.decode_memory();
        ServiceStats {
            groups,
            faces,
            listener_connected: self.gallery.listener_connected(),
            decode_in_use,
            decode_budget,
            decoded_images: self.images.decoded_images(),
            runtime: self.analyzer.runtime(),
            models: self.analyzer.models(),
            batches: self.analyzer.batch_counts(),
        }
    }

    /// The gallery (for key rotation and tests).
    pub fn gallery(&self) -> &Arc<Gallery> {
        &self.gallery
    }

    /// The embedding model new groups (and compare) use.
    pub fn model_version(&self) -> String {
        self.options
            .default_model
            .clone()
            .or_else(|| self.analyzer.models().into_iter().next())
            .unwrap_or_default()
    }

    /// A group keeps the embedding model it was created with (vectors of
    /// another model are not comparable with its faces), so its requests
    /// embed with that model, which must be loaded.
    fn ensure_model_runs(&self, group: &GroupRef, group_model: &str) -> Result<()> {
        if self.analyzer.models().iter().any(|m| m == group_model) {
            Ok(())
        } else {
            Err(ServiceError::invalid(format!(
                "group {} holds faces of model {group_model}, which this server does not run",
                group.group_id
            )))
        }
    }

    /// Runs a (blocking) gallery call off the async threads; its latency
    /// and failures are recorded under `operation`.
    async fn store<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Gallery) -> facegate_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let g = self.gallery.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || f(&g))
            .await
            .map_err(|e| ServiceError::Internal(format!("store worker failed: {e}")))?;
        telemetry::store_call(operation, started, &result);
        result.map_err(ServiceError::from)
    }

    /// A gallery call on a group that must exist (every group route but
    /// create-group): a malformed group id is a group not found.
    async fn group_store<T: Send + 'static>(
        &self,
        operation: &'static str,
        group: &GroupRef,
        f: impl FnOnce(&Gallery, &str, &str) -> facegate_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let g = group.clone();
        self.store(operation, move |gal| f(gal, &g.tenant, &g.group_id))
            .await
            .map_err(in_existing_group)
    }

    /// Loads an image and analyses it (one CPU slot throughout): the
    /// faces, largest first (at most [`facegate_core::MAX_FACES`], as the
    /// analyzer promises), in fractions of the image.
    async fn analyze(
        &self,
        input: ImageInput,
        role: ImageRole,
        request: AnalyzeRequest,
    ) -> Result<Vec<Face>> {
        let analyzer = self.analyzer.clone();
        self.images
            .with_image(input, role, self.options.limits, move |image| {
                let (w, h) = image.dimensions();
                let started = Instant::now();
                let faces = analyzer.analyze(image, &request);
                metrics::histogram!(telemetry::ANALYSIS_DURATION, "operation" => "analyze")
                    .record(telemetry::seconds_since(started));
                Ok(faces?.iter().map(|f| f.fractions_of(w, h)).collect())
            })
            .await
    }

    /// The largest face with its embedding, or NoFace naming `what`.
    fn the_face(faces: Vec<Face>, what: &'static str) -> Result<(Face, Vec<f32>)> {
        let mut face = faces.into_iter().next().ok_or(ServiceError::NoFace(what))?;
        let embedding = take_embedding(&mut face)?;
        Ok((face, embedding))
    }

    /// The API's 0-100 similarity of two embeddings of `model`.
    fn similarity(&self, model: &str, a: &[f32], b: &[f32]) -> Result<f32> {
        let cos = facegate_store::cosine_similarity(a, b)?;
        Ok(self.analyzer.similarity(model, cos).clamp(0.0, 100.0))
    }
}

/// One audit line (target `audit`) for a change to a tenant's data: the
/// tenant as [`telemetry::tenant_tag`], the group id and how many faces
/// the change concerned; never images, vectors or the appKey.
fn audit(action: &'static str, group: &GroupRef, faces: u64) {
    tracing::info!(
        target: "audit",
        action,
        tenant = %telemetry::tenant_tag(&group.tenant),
        group_id = %group.group_id,
        faces,
        "audit"
    );
}

/// A face's embedding, which the request asked the analyzer for.
fn take_embedding(face: &mut Face) -> Result<Vec<f32>> {
    face.embedding
        .take()
        .ok_or_else(|| ServiceError::Internal("analyzer returned no embedding".into()))
}
