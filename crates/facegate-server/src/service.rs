//! The business rules behind all three surfaces: image loading, face
//! ranking, registration under the quota, search, compare, verify,
//! liveness and listing. Handlers parse the wire format, call one method
//! here, and format the result; nothing here knows about HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use facegate_image::{
    decode, decode_base64, inspect, DecodeBudget, FetchPolicy, ImageError, Limits, RgbImage,
};
use facegate_store::{
    AddFacesOutcome, BBox, FaceRecord, Gallery, GroupInfo, NewFace, NewFaces, Page, StoreError,
    MAX_SEARCH_LIMIT,
};
use tokio::sync::Semaphore;

use crate::analyzer::{AnalyzeRequest, AnalyzedFace, FaceAnalyzer, SpoofingCondition};
use crate::error::{ImageRole, ServiceError};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Side of the face crop `aligned: true` expects.
pub const ALIGNED_SIDE: u32 = 224;
/// Most faces one registration may add.
pub const MAX_REGISTER_LIMIT: i64 = 20;

/// An input image as the client gave it.
#[derive(Clone)]
pub enum ImageInput {
    /// `image.bytes`: standard Base64, optionally a `data:` URL.
    Base64(String),
    /// `image.url`.
    Url(String),
    /// Raw file bytes (multipart upload).
    Bytes(Vec<u8>),
}

// Never print image data.
impl std::fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageInput::Base64(s) => write!(f, "Base64({} chars)", s.len()),
            ImageInput::Url(_) => f.write_str("Url(..)"),
            ImageInput::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl ImageInput {
    /// From the wire's `{url, bytes}` object: exactly one must be given.
    pub fn from_fields(url: Option<String>, bytes: Option<String>, field: &str) -> Result<Self> {
        match (url, bytes) {
            (Some(u), None) => Ok(ImageInput::Url(u)),
            (None, Some(b)) => Ok(ImageInput::Base64(b)),
            (Some(_), Some(_)) => Err(ServiceError::invalid(format!(
                "{field}: give either url or bytes, not both"
            ))),
            (None, None) => Err(ServiceError::invalid(format!(
                "{field}: url or bytes is required"
            ))),
        }
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
    pub spoofing: Option<SpoofingCondition>,
}

impl Default for FaceOptions {
    fn default() -> Self {
        FaceOptions {
            orientation: true,
            mask: true,
            spoofing: None,
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
        })
    }

    fn request(self, embedding: Option<&str>) -> AnalyzeRequest {
        AnalyzeRequest {
            embedding: embedding.map(str::to_string),
            orientation: self.orientation,
            mask: self.mask,
            spoofing: self.spoofing,
        }
    }
}

/// `spoofingCondition`: absent means balanced; anything but the three
/// names is InvalidParam.
pub fn parse_condition(condition: Option<&str>) -> Result<SpoofingCondition> {
    match condition {
        None => Ok(SpoofingCondition::Balanced),
        Some(s) => SpoofingCondition::parse(s).ok_or_else(|| {
            ServiceError::invalid("spoofingCondition must be weak, balanced or strict")
        }),
    }
}

/// A point as fractions of the image's width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FracPoint {
    /// x / width.
    pub x: f32,
    /// y / height.
    pub y: f32,
}

/// A face as the API reports it: geometry in fractions, optional fields
/// present only when their option was on.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDetail {
    /// Box, fractions in [0, 1].
    pub bbox: BBox,
    /// leftEye, rightEye, nose, leftLip, rightLip (empty for aligned crops).
    pub landmarks: Vec<FracPoint>,
    /// (yaw, pitch, roll) degrees, when orientation was requested.
    pub orientation: Option<(f32, f32, f32)>,
    /// Mask worn, when requested.
    pub mask: Option<bool>,
    /// Spoof verdict, when requested.
    pub spoofing: Option<bool>,
    /// Detection confidence in [0, 1].
    pub confidence: f32,
}

fn frac(v: f32, side: u32) -> f32 {
    if side == 0 || !v.is_finite() {
        return 0.0;
    }
    (v / side as f32).clamp(0.0, 1.0)
}

impl FaceDetail {
    fn from_analysis(face: &AnalyzedFace, width: u32, height: u32, opts: FaceOptions) -> Self {
        let b = face.bbox;
        FaceDetail {
            bbox: BBox {
                x0: frac(b.x0, width),
                y0: frac(b.y0, height),
                x1: frac(b.x1, width),
                y1: frac(b.y1, height),
            },
            landmarks: face
                .landmarks
                .iter()
                .map(|p| FracPoint {
                    x: frac(p.x, width),
                    y: frac(p.y, height),
                })
                .collect(),
            orientation: if opts.orientation {
                face.pose.map(|p| (p.yaw, p.pitch, p.roll))
            } else {
                None
            },
            mask: if opts.mask { face.mask } else { None },
            spoofing: opts.spoofing.and(face.liveness.map(|l| l.is_spoof)),
            confidence: face.confidence.clamp(0.0, 1.0),
        }
    }
}

/// The face details `/detect` reports for an already decoded image, and the
/// faces' embeddings when `embedding` is set (for `facegate detect` and
/// `facegate compare`, which run without a server).
pub fn analyze_offline(
    analyzer: &dyn FaceAnalyzer,
    image: &RgbImage,
    opts: FaceOptions,
    embedding: Option<&str>,
) -> Result<Vec<(FaceDetail, Option<Vec<f32>>)>> {
    let mut faces = analyzer.analyze(image, &opts.request(embedding))?;
    largest_first(&mut faces);
    faces.truncate(20);
    let (w, h) = image.dimensions();
    Ok(faces
        .into_iter()
        .map(|f| (FaceDetail::from_analysis(&f, w, h, opts), f.embedding))
        .collect())
}

/// A registered face with its similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMatch {
    /// The registered face.
    pub face: FaceRecord,
    /// Similarity 0-100.
    pub similarity: f32,
}

/// What a registration did.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Added faces: stored record and the detail of the detection.
    pub added: Vec<(FaceRecord, FaceDetail)>,
    /// Faces not added (beyond `limit`, or no room in the group).
    pub not_added: Vec<FaceDetail>,
    /// Some faces were refused for lack of room (code 40070).
    pub quota_partial: bool,
}

/// Result of a search by image.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Matches, by similarity descending.
    pub matches: Vec<FaceMatch>,
    /// The query face.
    pub source: FaceDetail,
}

/// Result of a compare.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Target faces at or above the threshold, similarity descending.
    pub matched: Vec<(FaceDetail, f32)>,
    /// The other target faces, similarity descending.
    pub unmatched: Vec<(FaceDetail, f32)>,
    /// The source image's largest face.
    pub source: FaceDetail,
}

/// Result of a verify.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// Similarity 0-100.
    pub similarity: f32,
    /// The registered face.
    pub face: FaceRecord,
    /// The compare image's largest face.
    pub source: FaceDetail,
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
}

/// How long a request waits for decode memory before the overload answer.
pub const DECODE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

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
        }
    }
}

/// The service: an analyzer, a gallery and the rules between them.
pub struct Service {
    analyzer: Arc<dyn FaceAnalyzer>,
    gallery: Arc<Gallery>,
    options: ServiceOptions,
    cpu: Arc<Semaphore>,
    decode_budget: DecodeBudget,
    decoded: Arc<AtomicUsize>,
}

/// Counts one decoded image for as long as it is alive.
struct DecodedImage(Arc<AtomicUsize>);

impl DecodedImage {
    fn count(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        DecodedImage(live.clone())
    }
}

impl Drop for DecodedImage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Base64 or raw bytes to encoded image bytes, within `limits`.
fn encoded_bytes(input: ImageInput, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    match input {
        ImageInput::Base64(s) => decode_base64(&s, limits.max_bytes),
        ImageInput::Bytes(b) if b.len() > limits.max_bytes => Err(ImageError::TooLarge {
            max_bytes: limits.max_bytes,
        }),
        ImageInput::Bytes(b) => Ok(b),
        // Downloaded before; never reaches here.
        ImageInput::Url(_) => Err(ImageError::InvalidFormat),
    }
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

fn largest_first(faces: &mut [AnalyzedFace]) {
    // Stable: equal areas keep the engine's order.
    faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
}

fn check_range(name: &str, v: i64, lo: i64, hi: i64) -> Result<usize> {
    if v < lo || v > hi {
        return Err(ServiceError::invalid(format!(
            "{name} must be between {lo} and {hi}"
        )));
    }
    Ok(v as usize)
}

fn check_threshold(t: f32) -> Result<f32> {
    if !(1.0..=100.0).contains(&t) {
        return Err(ServiceError::invalid("threshold must be between 1 and 100"));
    }
    Ok(t)
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
            cpu: Arc::new(Semaphore::new(options.cpu_slots.max(1))),
            decode_budget: DecodeBudget::new(options.decode_budget),
            options,
            decoded: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Decoded images in memory right now: never more than `cpu_slots`,
    /// however many requests are waiting (for tests and monitoring).
    pub fn decoded_images(&self) -> usize {
        self.decoded.load(Ordering::SeqCst)
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
    fn ensure_model_runs(&self, group_id: &str, group_model: &str) -> Result<()> {
        if self.analyzer.models().iter().any(|m| m == group_model) {
            Ok(())
        } else {
            Err(ServiceError::invalid(format!(
                "group {group_id} holds faces of model {group_model}, which this server does not run"
            )))
        }
    }

    /// Runs CPU-heavy work on the blocking pool, at most `cpu_slots` at once.
    async fn cpu<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("cpu semaphore closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))
    }

    /// Runs a (blocking) gallery call off the async threads.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Gallery) -> facegate_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let g = self.gallery.clone();
        tokio::task::spawn_blocking(move || f(&g))
            .await
            .map_err(|e| ServiceError::Internal(format!("store worker failed: {e}")))?
            .map_err(ServiceError::from)
    }

    /// A gallery call on a group that must exist (every group route but
    /// create-group): a malformed group id is a group not found.
    async fn group_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Gallery) -> facegate_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.store(f).await.map_err(in_existing_group)
    }

    /// Downloads an `image.url` on the async side (no CPU slot is held while
    /// the network is slow); other inputs pass through.
    async fn fetch(&self, input: ImageInput, role: ImageRole) -> Result<ImageInput> {
        match input {
            ImageInput::Url(url) => facegate_image::fetch(&url, &self.options.fetch)
                .await
                .map(ImageInput::Bytes)
                .map_err(|source| ServiceError::Image { role, source }),
            other => Ok(other),
        }
    }

    /// Loads an image and runs `work` on its pixels, holding one CPU slot
    /// from the start of decoding to the end of `work`. The decoded image
    /// never outlives its slot, so at most `cpu_slots` decoded images are in
    /// memory however many requests wait: what waits is the encoded form
    /// (at most 3 MB), not the pixels (120 MB for 40 megapixels).
    ///
    /// Before any pixel is allocated the header says how much memory the
    /// decode needs, and that much of the process-wide decode budget is
    /// reserved until `work` ends: an image larger than the whole budget is
    /// too large, and when the budget is in use the request waits up to
    /// [`DECODE_WAIT`], then gets the overload answer. Image errors name
    /// `role`.
    async fn with_image<T: Send + 'static>(
        &self,
        input: ImageInput,
        role: ImageRole,
        limits: Limits,
        work: impl FnOnce(&RgbImage) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let image_error = move |source| match source {
            ImageError::Busy { .. } => ServiceError::Overloaded,
            source => ServiceError::Image { role, source },
        };
        let input = self.fetch(input, role).await?;
        let (bytes, info) = tokio::task::spawn_blocking(move || {
            let bytes = encoded_bytes(input, &limits)?;
            let info = inspect(&bytes, &limits)?;
            Ok((bytes, info))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
        .map_err(image_error)?;
        let permit = self
            .decode_budget
            .reserve(info.decode_bytes, DECODE_WAIT)
            .await
            .map_err(image_error)?;
        let live = self.decoded.clone();
        self.cpu(move || {
            // Declared first so they are dropped after the image.
            let _permit = permit;
            let _counted = DecodedImage::count(&live);
            let image = decode(&bytes, &limits).map_err(image_error)?;
            work(&image)
        })
        .await?
    }

    /// Loads an image and analyses it (one CPU slot throughout); faces
    /// largest first, at most 20, and the image's size.
    async fn load_and_analyze(
        &self,
        input: ImageInput,
        role: ImageRole,
        request: AnalyzeRequest,
    ) -> Result<(Vec<AnalyzedFace>, u32, u32)> {
        let analyzer = self.analyzer.clone();
        let (mut faces, w, h) = self
            .with_image(input, role, self.options.limits, move |image| {
                let (w, h) = image.dimensions();
                Ok((analyzer.analyze(image, &request)?, w, h))
            })
            .await?;
        largest_first(&mut faces);
        faces.truncate(20);
        Ok((faces, w, h))
    }

    /// The largest face with its embedding, or NoFace naming `what`.
    fn the_face(faces: Vec<AnalyzedFace>, what: &'static str) -> Result<(AnalyzedFace, Vec<f32>)> {
        let mut face = faces.into_iter().next().ok_or(ServiceError::NoFace(what))?;
        let embedding = face
            .embedding
            .take()
            .ok_or_else(|| ServiceError::Internal("analyzer returned no embedding".into()))?;
        Ok((face, embedding))
    }

    fn similarity(&self, model: &str, a: &[f32], b: &[f32]) -> Result<f32> {
        let cos = facegate_store::cosine_similarity(a, b)?;
        Ok(self.analyzer.similarity(model, cos).clamp(0.0, 100.0))
    }

    // ---- groups ----------------------------------------------------------

    /// Creates a group bound to the default model version.
    pub async fn create_group(&self, tenant: &str, group_id: &str) -> Result<()> {
        let (t, g, v) = (
            tenant.to_string(),
            group_id.to_string(),
            self.model_version(),
        );
        self.store(move |gal| gal.create_group(&t, &g, &v)).await?;
        Ok(())
    }

    /// One page of groups. `limit` (as parsed from the request, see
    /// [`page_limit`]) is required unless a token is given.
    pub async fn list_groups(
        &self,
        tenant: &str,
        limit: Result<Option<i64>>,
        token: Option<String>,
    ) -> Result<Page<GroupInfo>> {
        let limit = page_limit(limit, token.as_deref())?;
        let t = tenant.to_string();
        self.store(move |g| g.list_groups(&t, limit, token.as_deref()))
            .await
    }

    /// One group's details.
    pub async fn get_group(&self, tenant: &str, group_id: &str) -> Result<GroupInfo> {
        let (t, g) = (tenant.to_string(), group_id.to_string());
        self.group_store(move |gal| gal.get_group(&t, &g)).await
    }

    /// Deletes a group and its faces.
    pub async fn delete_group(&self, tenant: &str, group_id: &str) -> Result<()> {
        let (t, g) = (tenant.to_string(), group_id.to_string());
        self.group_store(move |gal| gal.delete_group(&t, &g)).await
    }

    // ---- faces -----------------------------------------------------------

    /// Detects faces.
    pub async fn detect(&self, image: ImageInput, opts: FaceOptions) -> Result<Vec<FaceDetail>> {
        let (faces, w, h) = self
            .load_and_analyze(image, ImageRole::Image, opts.request(None))
            .await?;
        Ok(faces
            .iter()
            .map(|f| FaceDetail::from_analysis(f, w, h, opts))
            .collect())
    }

    /// Registers the largest `limit` faces of an image under the quota.
    pub async fn register(
        &self,
        tenant: &str,
        group_id: &str,
        image: ImageInput,
        external_image_id: Option<String>,
        limit: Option<i64>,
        opts: FaceOptions,
    ) -> Result<RegisterOutcome> {
        let limit = match limit {
            None => return Err(ServiceError::invalid("limit is required")),
            Some(l) => check_range("limit", l, 1, MAX_REGISTER_LIMIT)?,
        };
        if let Some(ext) = &external_image_id {
            if !facegate_store::is_valid_external_image_id(ext) {
                return Err(ServiceError::invalid(
                    "externalImageId must match [a-zA-Z0-9_.\\-:]{1,255}",
                ));
            }
        }
        // Cheap checks before the expensive analysis.
        let group = self.get_group(tenant, group_id).await?;
        self.ensure_model_runs(group_id, &group.model_version)?;
        let model_version = group.model_version;
        let (faces, w, h) = self
            .load_and_analyze(image, ImageRole::Image, opts.request(Some(&model_version)))
            .await?;
        let details: Vec<FaceDetail> = faces
            .iter()
            .map(|f| FaceDetail::from_analysis(f, w, h, opts))
            .collect();
        let take = limit.min(faces.len());
        let mut new_faces = Vec::with_capacity(take);
        for (f, d) in faces.into_iter().zip(&details).take(take) {
            let embedding = f
                .embedding
                .ok_or_else(|| ServiceError::Internal("analyzer returned no embedding".into()))?;
            new_faces.push(NewFace {
                bbox: d.bbox,
                confidence: d.confidence,
                embedding,
            });
        }
        let request = NewFaces {
            external_image_id,
            model_version: model_version.clone(),
            faces: new_faces,
        };
        let (t, g, quota) = (
            tenant.to_string(),
            group_id.to_string(),
            self.options.max_faces_per_group,
        );
        let AddFacesOutcome {
            added, not_added, ..
        } = self
            .group_store(move |gal| gal.add_faces(&t, &g, request, quota))
            .await?;
        let quota_partial = !not_added.is_empty();
        let mut details = details.into_iter();
        let added: Vec<(FaceRecord, FaceDetail)> =
            added.into_iter().zip(details.by_ref()).collect();
        // What the quota refused comes first (larger), then what was
        // beyond `limit`.
        Ok(RegisterOutcome {
            model_version,
            added,
            not_added: details.collect(),
            quota_partial,
        })
    }

    /// Deletes one face.
    pub async fn delete_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<()> {
        let (t, g, f) = (
            tenant.to_string(),
            group_id.to_string(),
            face_id.to_string(),
        );
        self.group_store(move |gal| gal.delete_face(&t, &g, &f))
            .await
    }

    /// One page of a group's faces, newest first, with the group's model
    /// version. `limit` as for [`Service::list_groups`].
    pub async fn list_faces(
        &self,
        tenant: &str,
        group_id: &str,
        limit: Result<Option<i64>>,
        token: Option<String>,
    ) -> Result<(String, Page<FaceRecord>)> {
        let limit = page_limit(limit, token.as_deref())?;
        let (t, g) = (tenant.to_string(), group_id.to_string());
        self.group_store(move |gal| {
            let info = gal.get_group(&t, &g)?;
            let page = gal.list_faces(&t, &g, limit, token.as_deref())?;
            Ok((info.model_version, page))
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn search_embedding(
        &self,
        model: &str,
        tenant: &str,
        group_id: &str,
        query: Vec<f32>,
        limit: usize,
        threshold: f32,
        exclude: Option<String>,
    ) -> Result<Vec<FaceMatch>> {
        // Slightly lenient cosine so rounding in the mapping never drops a
        // face whose reported similarity reaches the threshold; the exact
        // filter is applied on the reported value below.
        let min_cos = self.analyzer.cosine_for_similarity(model, threshold) - 1e-4;
        let (t, g) = (tenant.to_string(), group_id.to_string());
        let hits = self
            .group_store(move |gal| gal.search(&t, &g, &query, limit, min_cos, exclude.as_deref()))
            .await?;
        Ok(hits
            .into_iter()
            .map(|h| FaceMatch {
                similarity: self.analyzer.similarity(model, h.score).clamp(0.0, 100.0),
                face: h.face,
            })
            .filter(|m| m.similarity >= threshold)
            .collect())
    }

    /// Searches a group with a registered face (which is not in the result).
    pub async fn search_by_face(
        &self,
        tenant: &str,
        group_id: &str,
        face_id: &str,
        limit: Option<i64>,
        threshold: Option<f32>,
    ) -> Result<Vec<FaceMatch>> {
        let (limit, threshold) = search_params(limit, threshold)?;
        let group = self.get_group(tenant, group_id).await?;
        self.ensure_model_runs(group_id, &group.model_version)?;
        let (t, g, f) = (
            tenant.to_string(),
            group_id.to_string(),
            face_id.to_string(),
        );
        let query = self
            .group_store(move |gal| gal.embedding_of(&t, &g, &f))
            .await?;
        self.search_embedding(
            &group.model_version,
            tenant,
            group_id,
            query,
            limit,
            threshold,
            Some(face_id.to_string()),
        )
        .await
    }

    /// Searches a group with the largest face of an image.
    pub async fn search_by_image(
        &self,
        tenant: &str,
        group_id: &str,
        image: ImageInput,
        limit: Option<i64>,
        threshold: Option<f32>,
        opts: FaceOptions,
    ) -> Result<SearchOutcome> {
        let (limit, threshold) = search_params(limit, threshold)?;
        let group = self.get_group(tenant, group_id).await?;
        self.ensure_model_runs(group_id, &group.model_version)?;
        let (faces, w, h) = self
            .load_and_analyze(
                image,
                ImageRole::Image,
                opts.request(Some(&group.model_version)),
            )
            .await?;
        let (face, embedding) = Self::the_face(faces, "the image")?;
        let matches = self
            .search_embedding(
                &group.model_version,
                tenant,
                group_id,
                embedding,
                limit,
                threshold,
                None,
            )
            .await?;
        Ok(SearchOutcome {
            model_version: group.model_version,
            matches,
            source: FaceDetail::from_analysis(&face, w, h, opts),
        })
    }

    /// Compares the largest face of `source` with every face of `target`.
    pub async fn compare(
        &self,
        source: ImageInput,
        target: ImageInput,
        threshold: Option<f32>,
        opts: FaceOptions,
    ) -> Result<CompareOutcome> {
        let threshold = match threshold {
            None => return Err(ServiceError::invalid("threshold is required")),
            Some(t) => check_threshold(t)?,
        };
        let model = self.model_version();
        let request = opts.request(Some(&model));
        // Each image is decoded and analysed under its own CPU slot.
        let (src, tgt) = tokio::join!(
            self.load_and_analyze(source, ImageRole::Source, request.clone()),
            self.load_and_analyze(target, ImageRole::Target, request)
        );
        // The source image's errors win over the target's, and both over a
        // source without a face.
        let (src_faces, sw, sh) = src?;
        let (tgt_faces, tw, th) = tgt?;
        let (face, embedding) = Self::the_face(src_faces, "sourceImage")?;
        let mut matched = Vec::new();
        let mut unmatched = Vec::new();
        for f in &tgt_faces {
            let e = f
                .embedding
                .as_deref()
                .ok_or_else(|| ServiceError::Internal("analyzer returned no embedding".into()))?;
            let s = self.similarity(&model, &embedding, e)?;
            let d = FaceDetail::from_analysis(f, tw, th, opts);
            if s >= threshold {
                matched.push((d, s));
            } else {
                unmatched.push((d, s));
            }
        }
        matched.sort_by(|a, b| b.1.total_cmp(&a.1));
        unmatched.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(CompareOutcome {
            model_version: model,
            matched,
            unmatched,
            source: FaceDetail::from_analysis(&face, sw, sh, opts),
        })
    }

    /// Compares the largest face of an image with one registered face.
    pub async fn verify(
        &self,
        tenant: &str,
        group_id: &str,
        face_id: &str,
        image: ImageInput,
        opts: FaceOptions,
    ) -> Result<VerifyOutcome> {
        let (t, g, f) = (
            tenant.to_string(),
            group_id.to_string(),
            face_id.to_string(),
        );
        let (record, registered) = self
            .group_store(move |gal| Ok((gal.get_face(&t, &g, &f)?, gal.embedding_of(&t, &g, &f)?)))
            .await?;
        self.ensure_model_runs(group_id, &record.model_version)?;
        let (faces, w, h) = self
            .load_and_analyze(
                image,
                ImageRole::Image,
                opts.request(Some(&record.model_version)),
            )
            .await?;
        let (face, embedding) = Self::the_face(faces, "compareImage")?;
        Ok(VerifyOutcome {
            similarity: self.similarity(&record.model_version, &embedding, &registered)?,
            face: record,
            source: FaceDetail::from_analysis(&face, w, h, opts),
        })
    }

    // ---- liveness --------------------------------------------------------

    /// Spoof detection per face, or on an aligned 224x224 crop.
    pub async fn spoofing(
        &self,
        image: ImageInput,
        aligned: bool,
        condition: SpoofingCondition,
    ) -> Result<Vec<FaceDetail>> {
        if aligned {
            // An aligned crop of the wrong size is -45070 whatever its size,
            // so the general 80 px minimum does not apply before that check.
            let limits = Limits {
                min_side: 1,
                ..self.options.limits
            };
            let analyzer = self.analyzer.clone();
            let verdict = self
                .with_image(image, ImageRole::Image, limits, move |crop| {
                    let (w, h) = crop.dimensions();
                    if (w, h) != (ALIGNED_SIDE, ALIGNED_SIDE) {
                        return Err(ServiceError::AlignedSize {
                            expected: ALIGNED_SIDE,
                            width: w,
                            height: h,
                        });
                    }
                    Ok(analyzer.spoof_aligned(crop, condition)?)
                })
                .await?;
            return Ok(vec![FaceDetail {
                bbox: BBox {
                    x0: 0.0,
                    y0: 0.0,
                    x1: 0.0,
                    y1: 0.0,
                },
                landmarks: Vec::new(),
                orientation: None,
                mask: None,
                spoofing: Some(verdict.is_spoof),
                confidence: 0.0,
            }]);
        }
        let opts = FaceOptions {
            orientation: false,
            mask: false,
            spoofing: Some(condition),
        };
        let (faces, w, h) = self
            .load_and_analyze(image, ImageRole::Image, opts.request(None))
            .await?;
        Ok(faces
            .iter()
            .map(|f| FaceDetail::from_analysis(f, w, h, opts))
            .collect())
    }

    /// Argos liveness score (0-100, higher = live) of the largest face.
    pub async fn liveness_score(&self, image: ImageInput) -> Result<f32> {
        let request = AnalyzeRequest {
            embedding: None,
            orientation: false,
            mask: false,
            spoofing: Some(SpoofingCondition::Balanced),
        };
        let (faces, _, _) = self
            .load_and_analyze(image, ImageRole::Image, request)
            .await?;
        let face = faces.first().ok_or(ServiceError::NoFace("the image"))?;
        let live = face
            .liveness
            .ok_or_else(|| ServiceError::Internal("analyzer returned no liveness".into()))?;
        Ok((live.real_probability * 100.0).clamp(0.0, 100.0))
    }
}

/// A listing's limit: required (1-200) without a token; ignored with one,
/// whatever it is, because the token fixes the limit it was issued with
/// (API.md: "a different limit beside a token is ignored"). `limit` comes
/// as the surface parsed it, so a malformed value is an error only where
/// the value matters. The returned value is unused with a token.
pub fn page_limit(limit: Result<Option<i64>>, token: Option<&str>) -> Result<usize> {
    if token.is_some_and(|t| !t.is_empty()) {
        return Ok(1);
    }
    match limit? {
        None => Err(ServiceError::invalid("limit is required")),
        Some(l) => check_range("limit", l, 1, facegate_store::MAX_PAGE_LIMIT as i64),
    }
}

fn search_params(limit: Option<i64>, threshold: Option<f32>) -> Result<(usize, f32)> {
    let limit = match limit {
        None => return Err(ServiceError::invalid("limit is required")),
        Some(l) => check_range("limit", l, 1, MAX_SEARCH_LIMIT as i64)?,
    };
    let threshold = match threshold {
        None => return Err(ServiceError::invalid("threshold is required")),
        Some(t) => check_threshold(t)?,
    };
    Ok((limit, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::{AnalyzerError, HeadPose, Liveness, PixelBox, PixelPoint};
    use facegate_store::{GalleryOptions, KeyRing, MasterKey};

    /// Test double: returns fixed faces for every image. Unit tests only;
    /// end-to-end tests use the real engine.
    struct FakeAnalyzerForUnitTests {
        faces: Vec<AnalyzedFace>,
        /// Fail every analysis with this (`true`: a per-face failure,
        /// `false`: an engine failure).
        fail: Option<bool>,
        /// When set, each analysis reports on the first channel that it has
        /// started, then waits for a go on the second.
        gate: Option<(
            tokio::sync::mpsc::UnboundedSender<()>,
            std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        )>,
    }

    impl FakeAnalyzerForUnitTests {
        fn new(faces: Vec<AnalyzedFace>) -> Self {
            FakeAnalyzerForUnitTests {
                faces,
                fail: None,
                gate: None,
            }
        }
    }

    fn fake_face(side: f32, seed: usize) -> AnalyzedFace {
        let mut e = vec![0.0f32; 8];
        e[seed % 8] = 1.0;
        AnalyzedFace {
            bbox: PixelBox {
                x0: 10.0,
                y0: 10.0,
                x1: 10.0 + side,
                y1: 10.0 + side,
            },
            landmarks: [PixelPoint { x: 20.0, y: 20.0 }; 5],
            confidence: 0.9,
            pose: Some(HeadPose::default()),
            mask: Some(false),
            liveness: Some(Liveness {
                real_probability: 0.8,
                is_spoof: false,
            }),
            embedding: Some(e),
        }
    }

    impl FaceAnalyzer for FakeAnalyzerForUnitTests {
        fn analyze(
            &self,
            _image: &RgbImage,
            request: &AnalyzeRequest,
        ) -> Result<Vec<AnalyzedFace>, AnalyzerError> {
            if let Some((started, go)) = &self.gate {
                started.send(()).unwrap();
                go.lock().unwrap().recv().unwrap();
            }
            match self.fail {
                Some(true) => return Err(AnalyzerError::Face("alignment: /x/y".into())),
                Some(false) => return Err(AnalyzerError::Engine("runtime: /x/y".into())),
                None => {}
            }
            Ok(self
                .faces
                .iter()
                .cloned()
                .map(|mut f| {
                    if request.embedding.is_none() {
                        f.embedding = None;
                    }
                    f
                })
                .collect())
        }
        fn spoof_aligned(
            &self,
            _crop: &RgbImage,
            _c: SpoofingCondition,
        ) -> Result<Liveness, AnalyzerError> {
            Ok(Liveness {
                real_probability: 0.1,
                is_spoof: true,
            })
        }
        fn models(&self) -> Vec<String> {
            vec!["fake-v1".into()]
        }
        fn similarity(&self, _: &str, cosine: f32) -> f32 {
            (cosine.clamp(0.0, 1.0)) * 100.0
        }
        fn cosine_for_similarity(&self, _: &str, s: f32) -> f32 {
            s / 100.0
        }
    }

    fn png(w: u32, h: u32) -> ImageInput {
        let img = RgbImage::new(w, h);
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        ImageInput::Bytes(out.into_inner())
    }

    fn service(dir: &std::path::Path, faces: Vec<AnalyzedFace>, quota: u64) -> Service {
        service_with(dir, FakeAnalyzerForUnitTests::new(faces), quota, 1)
    }

    fn service_with(
        dir: &std::path::Path,
        analyzer: FakeAnalyzerForUnitTests,
        quota: u64,
        cpu_slots: usize,
    ) -> Service {
        // Each service has its own key, so its own database.
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = MasterKey::generate().unwrap();
        let gallery = Gallery::open(
            &format!("sqlite://{}", dir.join(format!("t{n}.db")).display()),
            KeyRing::new(&key),
            GalleryOptions::default(),
        )
        .unwrap();
        Service::new(
            Arc::new(analyzer),
            Arc::new(gallery),
            ServiceOptions {
                max_faces_per_group: quota,
                cpu_slots,
                ..ServiceOptions::default()
            },
        )
    }

    #[tokio::test]
    async fn register_ranks_by_size_limits_and_reports_quota() {
        let dir = tempfile::tempdir().unwrap();
        // Engine order deliberately not by size.
        let faces = vec![fake_face(20.0, 0), fake_face(60.0, 1), fake_face(40.0, 2)];
        let svc = service(dir.path(), faces, 2);
        svc.create_group("t", "g").await.unwrap();
        let out = svc
            .register(
                "t",
                "g",
                png(100, 100),
                None,
                Some(1),
                FaceOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.added.len(), 1);
        assert_eq!(out.not_added.len(), 2);
        assert!(!out.quota_partial);
        assert_eq!(
            out.added[0].1.bbox.x1, 0.7,
            "the largest (60 px) face first"
        );
        let out = svc
            .register(
                "t",
                "g",
                png(100, 100),
                None,
                Some(3),
                FaceOptions::default(),
            )
            .await
            .unwrap();
        assert!(out.quota_partial);
        assert_eq!(out.added.len(), 1);
        assert_eq!(out.not_added.len(), 2);
        let err = svc
            .register(
                "t",
                "g",
                png(100, 100),
                None,
                Some(3),
                FaceOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ServiceError::Store(facegate_store::StoreError::QuotaExceeded { .. })
        ));
    }

    #[tokio::test]
    async fn paging_tokens_pass_through_and_fix_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
        for g in ["a", "b", "c"] {
            svc.create_group("t", g).await.unwrap();
        }
        let p1 = svc.list_groups("t", Ok(Some(2)), None).await.unwrap();
        assert_eq!(p1.items.len(), 2);
        assert!(!p1.next_token.is_empty());
        // No limit beside a token is fine; the token's limit applies.
        let p2 = svc
            .list_groups("t", Ok(None), Some(p1.next_token.clone()))
            .await
            .unwrap();
        assert_eq!(p2.items.len(), 1);
        assert_eq!(p2.next_token, "");
        assert!(matches!(
            svc.list_groups("t", Ok(None), None).await,
            Err(ServiceError::InvalidParam(_))
        ));
        // A token of one listing is not valid for another.
        for _ in 0..3 {
            svc.register(
                "t",
                "a",
                png(100, 100),
                None,
                Some(1),
                FaceOptions::default(),
            )
            .await
            .unwrap();
        }
        let (version, f1) = svc.list_faces("t", "a", Ok(Some(2)), None).await.unwrap();
        assert_eq!(version, "fake-v1");
        assert_eq!(f1.items.len(), 2);
        let (_, f2) = svc
            .list_faces("t", "a", Ok(Some(200)), Some(f1.next_token.clone()))
            .await
            .unwrap();
        assert_eq!(f2.items.len(), 1);
        assert!(matches!(
            svc.list_groups("t", Ok(Some(2)), Some(f1.next_token)).await,
            Err(ServiceError::Store(
                facegate_store::StoreError::InvalidToken(_)
            ))
        ));
        // Beside a token, whatever limit the client sent is ignored, even
        // one that does not parse; without a token it is an error.
        let p1 = svc.list_groups("t", Ok(Some(2)), None).await.unwrap();
        let garbage = || Err(ServiceError::invalid("limit must be an integer"));
        let p2 = svc
            .list_groups("t", garbage(), Some(p1.next_token.clone()))
            .await
            .unwrap();
        assert_eq!(p2.items.len(), 1);
        let p2 = svc
            .list_groups("t", Ok(Some(-7)), Some(p1.next_token))
            .await
            .unwrap();
        assert_eq!(p2.items.len(), 1);
        assert!(matches!(
            svc.list_groups("t", garbage(), None).await,
            Err(ServiceError::InvalidParam(_))
        ));
        assert!(matches!(
            svc.list_groups("t", garbage(), Some(String::new())).await,
            Err(ServiceError::InvalidParam(_))
        ));
        let (_, f1) = svc.list_faces("t", "a", Ok(Some(2)), None).await.unwrap();
        let (_, f2) = svc
            .list_faces("t", "a", garbage(), Some(f1.next_token))
            .await
            .unwrap();
        assert_eq!(f2.items.len(), 1);
    }

    #[tokio::test]
    async fn options_off_omit_fields_and_missing_face_is_invalid_param() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
        let opts = FaceOptions {
            orientation: false,
            mask: false,
            spoofing: None,
        };
        let d = svc.detect(png(100, 100), opts).await.unwrap();
        assert_eq!(d[0].orientation, None);
        assert_eq!(d[0].mask, None);
        assert_eq!(d[0].spoofing, None);
        let d = svc
            .detect(
                png(100, 100),
                FaceOptions {
                    spoofing: Some(SpoofingCondition::Strict),
                    ..FaceOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(d[0].orientation.is_some() && d[0].mask.is_some());
        assert_eq!(d[0].spoofing, Some(false));

        let empty = service(dir.path(), vec![], 100);
        empty.create_group("t", "g").await.unwrap();
        let err = empty
            .search_by_image(
                "t",
                "g",
                png(100, 100),
                Some(5),
                Some(50.0),
                FaceOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::NoFace("the image")));
    }

    #[tokio::test]
    async fn aligned_spoofing_needs_224() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path(), vec![], 100);
        let d = svc
            .spoofing(png(224, 224), true, SpoofingCondition::Balanced)
            .await
            .unwrap();
        assert_eq!(d.len(), 1);
        assert!(d[0].landmarks.is_empty());
        assert_eq!(d[0].confidence, 0.0);
        assert_eq!(d[0].spoofing, Some(true));
        let err = svc
            .spoofing(png(224, 225), true, SpoofingCondition::Balanced)
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::AlignedSize { .. }));
    }

    /// Decode and analysis share one CPU slot: while the only slot
    /// analyses one image, the other requests wait with their encoded bytes
    /// and have decoded nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decoded_images_never_outnumber_cpu_slots() {
        let dir = tempfile::tempdir().unwrap();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let (go_tx, go_rx) = std::sync::mpsc::sync_channel(16);
        let analyzer = FakeAnalyzerForUnitTests {
            gate: Some((started_tx, std::sync::Mutex::new(go_rx))),
            ..FakeAnalyzerForUnitTests::new(vec![fake_face(50.0, 0)])
        };
        let svc = Arc::new(service_with(dir.path(), analyzer, 100, 1));
        let requests: Vec<_> = (0..4)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.detect(png(400, 400), FaceOptions::default()).await })
            })
            .collect();
        for round in 0..4 {
            tokio::time::timeout(std::time::Duration::from_secs(10), started_rx.recv())
                .await
                .expect("an analysis starts")
                .unwrap();
            // Give the waiting requests every chance to decode early.
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            assert_eq!(svc.decoded_images(), 1, "round {round}");
            go_tx.send(()).unwrap();
        }
        for r in requests {
            assert_eq!(r.await.unwrap().unwrap().len(), 1);
        }
        assert_eq!(svc.decoded_images(), 0);
    }

    #[tokio::test]
    async fn per_face_failures_are_the_clients_engine_failures_internal() {
        let dir = tempfile::tempdir().unwrap();
        for (fail, client) in [(true, true), (false, false)] {
            let analyzer = FakeAnalyzerForUnitTests {
                fail: Some(fail),
                ..FakeAnalyzerForUnitTests::new(vec![fake_face(50.0, 0)])
            };
            let svc = service_with(dir.path(), analyzer, 100, 1);
            let err = svc
                .detect(png(100, 100), FaceOptions::default())
                .await
                .unwrap_err();
            match err {
                ServiceError::Analyzer(AnalyzerError::Face(_)) => assert!(client),
                ServiceError::Analyzer(AnalyzerError::Engine(_)) => assert!(!client),
                other => panic!("{other:?}"),
            }
            assert_eq!(svc.decoded_images(), 0);
        }
    }

    #[tokio::test]
    async fn malformed_group_ids_are_not_found_except_on_create() {
        use facegate_store::StoreError as S;
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
        assert!(matches!(
            svc.create_group("t", "Bad_Id").await,
            Err(ServiceError::Store(S::InvalidGroupId))
        ));
        let face = "00000000-0000-4000-8000-000000000000";
        let long = "a".repeat(256);
        for bad in ["Bad_Id", "", long.as_str(), "a b"] {
            let not_found = |r: Result<(), ServiceError>| {
                assert!(
                    matches!(r, Err(ServiceError::Store(S::GroupNotFound))),
                    "{bad:?}: {r:?}"
                )
            };
            not_found(svc.get_group("t", bad).await.map(drop));
            not_found(svc.delete_group("t", bad).await);
            not_found(
                svc.register(
                    "t",
                    bad,
                    png(100, 100),
                    None,
                    Some(1),
                    FaceOptions::default(),
                )
                .await
                .map(drop),
            );
            not_found(svc.list_faces("t", bad, Ok(Some(5)), None).await.map(drop));
            not_found(svc.delete_face("t", bad, face).await);
            not_found(
                svc.search_by_face("t", bad, face, Some(5), Some(50.0))
                    .await
                    .map(drop),
            );
            not_found(
                svc.search_by_image(
                    "t",
                    bad,
                    png(100, 100),
                    Some(5),
                    Some(50.0),
                    FaceOptions::default(),
                )
                .await
                .map(drop),
            );
            not_found(
                svc.verify("t", bad, face, png(100, 100), FaceOptions::default())
                    .await
                    .map(drop),
            );
        }
    }

    #[test]
    fn wire_option_defaults_and_validation() {
        let o = FaceOptions::from_wire(None, None, None, None).unwrap();
        assert_eq!(o, FaceOptions::default());
        let o = FaceOptions::from_wire(None, None, Some(true), None).unwrap();
        assert_eq!(o.spoofing, Some(SpoofingCondition::Balanced));
        assert!(FaceOptions::from_wire(None, None, None, Some("Strict")).is_err());
        assert!(FaceOptions::from_wire(None, None, None, Some("")).is_err());
        assert!(ImageInput::from_fields(None, None, "image").is_err());
        assert!(ImageInput::from_fields(Some("u".into()), Some("b".into()), "image").is_err());
    }
}
