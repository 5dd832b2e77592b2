//! Surface 1: NHN Face Recognition Plus (seed 003), under
//! `/nhn-face-reco/v1.0/appkeys/{appKey}`, authenticated by `x-nhn-apikey`.
//! Every answer is HTTP 200 with the NHN envelope; [`RecoError`] is the one
//! place errors become result codes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::limits::COMPARE_BODY_LIMIT;
use super::nhn_common::{
    classify, error_response, log_if_internal, nhn_credentials, required_image, wire_details,
    Envelope, MatchQuery, NhnCode, NhnJson, NhnOk, NhnPath, NhnQuery, NhnStatus, PageQuery,
    WireFace, WireFaceDetail, WireImage, WireOptions,
};
use super::state::AppState;
use crate::error::ServiceError;
use crate::service::{
    parse_condition, FaceMatch, FaceOptions, FaceRef, GroupRef, Lane, RegisterRequest,
    SearchParams, Service, SpoofingOutcome,
};

/// The API key header of this surface.
pub const API_KEY_HEADER: &str = "x-nhn-apikey";

/// The OpenAPI tag of this surface's operations.
pub const TAG: &str = "NHN Face Recognition Plus";

/// The routes and their documentation, relative to
/// `/nhn-face-reco/v1.0/appkeys/{app_key}`.
pub fn router() -> OpenApiRouter<AppState> {
    // Compare takes two images, so its body may be twice as large.
    let compare_route = OpenApiRouter::new()
        .routes(routes!(compare))
        .layer(DefaultBodyLimit::max(COMPARE_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(create_group, list_groups))
        .routes(routes!(get_group, delete_group, register))
        .routes(routes!(list_faces))
        .routes(routes!(search_by_face, delete_face))
        .routes(routes!(search_by_image))
        .routes(routes!(detect))
        .merge(compare_route)
        .routes(routes!(verify))
        .routes(routes!(spoofing))
}

/// The one mapping of [`ServiceError`] onto this surface's envelope.
pub fn to_wire(err: &ServiceError) -> Response {
    let (code, detail) = classify(err);
    log_if_internal(code, err);
    let message = match err {
        ServiceError::Image { role, .. } => code.compare_name(*role),
        _ => code.name().to_string(),
    };
    error_response(code, message, detail)
}

/// A failed request of this surface.
#[derive(Debug)]
pub struct RecoError(ServiceError);

impl<E: Into<ServiceError>> From<E> for RecoError {
    fn from(e: E) -> Self {
        RecoError(e.into())
    }
}

impl IntoResponse for RecoError {
    fn into_response(self) -> Response {
        to_wire(&self.0)
    }
}

type Reply<T> = Result<NhnOk<T>, RecoError>;

/// An authenticated request: the tenant of the path's appKey whose
/// `x-nhn-apikey` matched, and the service to run it on.
pub struct Tenant {
    service: Arc<Service>,
    app_key: String,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = RecoError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, RecoError> {
        let (app_key, key) = nhn_credentials(parts, st, API_KEY_HEADER).await?;
        let app_key = st
            .tenants()
            .by_face_api_key(&app_key, &key)
            .ok_or(ServiceError::Unauthorized)?
            .to_string();
        Ok(Tenant {
            service: st.service()?,
            app_key,
        })
    }
}

/// `{group_id}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct GroupPath {
    /// The group, `[a-z0-9-]{1,255}`.
    group_id: String,
}

/// `{group_id}` and `{face_id}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct FacePath {
    /// The group, `[a-z0-9-]{1,255}`.
    group_id: String,
    /// A registered face's `faceId`.
    face_id: String,
}

impl Tenant {
    /// The request's face options, analysed in this tenant's lane.
    fn options(&self, wire: &WireOptions) -> Result<FaceOptions, ServiceError> {
        Ok(wire.parse()?.in_lane(Lane::of_tenant(&self.app_key)))
    }

    fn group(&self, group_id: String) -> GroupRef {
        GroupRef {
            tenant: self.app_key.clone(),
            group_id,
        }
    }

    fn face(&self, path: FacePath) -> FaceRef {
        FaceRef {
            group: self.group(path.group_id),
            face_id: path.face_id,
        }
    }
}

// ---- groups ----------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateGroupBody {
    /// The new group's id; an invalid one is -40010, an existing one -40020.
    #[schema(value_type = String, required = true, pattern = "^[a-z0-9-]{1,255}$")]
    group_id: Option<String>,
}

/// Create a group.
#[utoipa::path(post, path = "/groups", tag = TAG, operation_id = "createGroup",
    request_body = CreateGroupBody,
    responses((status = 200, description = "Created (resultCode 0), or an error in the envelope", body = NhnStatus)))]
async fn create_group(t: Tenant, NhnJson(b): NhnJson<CreateGroupBody>) -> Reply<()> {
    let id = b
        .group_id
        .ok_or_else(|| ServiceError::invalid("groupId is required"))?;
    t.service.create_group(&t.group(id)).await?;
    Ok(NhnOk::empty())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GroupSummary {
    group_id: String,
    model_version: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    group_count: usize,
    groups: Vec<GroupSummary>,
    /// The token of the next page; "" when there is none.
    next_token: String,
}

/// List the tenant's groups, a page at a time.
#[utoipa::path(get, path = "/groups", tag = TAG, operation_id = "listGroups",
    params(PageQuery),
    responses((status = 200, description = "A page of groups, or an error in the envelope", body = Envelope<GroupList>)))]
async fn list_groups(t: Tenant, NhnQuery(q): NhnQuery<PageQuery>) -> Reply<GroupList> {
    let page = t.service.list_groups(&t.app_key, q.page()?).await?;
    Ok(NhnOk::data(GroupList {
        group_count: page.items.len(),
        groups: page
            .items
            .into_iter()
            .map(|g| GroupSummary {
                group_id: g.group_id,
                model_version: g.model_version,
            })
            .collect(),
        next_token: page.next_token,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GroupDetail {
    group_id: String,
    /// The embedding model the group's vectors come from.
    model_version: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    #[schema(example = "2026-12-04T09:30:00")]
    create_time: String,
    face_count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GroupDetails {
    /// Always 1.
    group_count: usize,
    groups: Vec<GroupDetail>,
}

/// One group: its model, creation time and face count.
#[utoipa::path(get, path = "/groups/{group_id}", tag = TAG, operation_id = "getGroup",
    params(GroupPath),
    responses((status = 200, description = "The group, or an error in the envelope", body = Envelope<GroupDetails>)))]
async fn get_group(t: Tenant, NhnPath(p): NhnPath<GroupPath>) -> Reply<GroupDetails> {
    let g = t.service.get_group(&t.group(p.group_id)).await?;
    Ok(NhnOk::data(GroupDetails {
        group_count: 1,
        groups: vec![GroupDetail {
            group_id: g.group_id,
            model_version: g.model_version,
            create_time: g.created_at.to_wire_seconds(),
            face_count: g.face_count,
        }],
    }))
}

/// Delete a group and all its faces, permanently.
#[utoipa::path(delete, path = "/groups/{group_id}", tag = TAG, operation_id = "deleteGroup",
    params(GroupPath),
    responses((status = 200, description = "Deleted, or an error in the envelope", body = NhnStatus)))]
async fn delete_group(t: Tenant, NhnPath(p): NhnPath<GroupPath>) -> Reply<()> {
    t.service.delete_group(&t.group(p.group_id)).await?;
    Ok(NhnOk::empty())
}

// ---- faces -----------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
struct ImageBody {
    #[schema(value_type = WireImage, required = true)]
    image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

/// The faces found in an image (at most 20, largest first).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FaceDetails {
    face_detail_count: usize,
    face_details: Vec<WireFaceDetail>,
}

impl FaceDetails {
    pub(super) fn new(face_details: Vec<WireFaceDetail>) -> Self {
        FaceDetails {
            face_detail_count: face_details.len(),
            face_details,
        }
    }
}

/// Detect faces: box, landmarks, pose, mask, and liveness on request.
///
/// At most 20 faces, largest first.
#[utoipa::path(post, path = "/detect", tag = TAG, operation_id = "detect",
    request_body = ImageBody,
    responses((status = 200, description = "The faces, or an error in the envelope", body = Envelope<FaceDetails>)))]
async fn detect(t: Tenant, NhnJson(b): NhnJson<ImageBody>) -> Reply<FaceDetails> {
    let opts = t.options(&b.options)?;
    let faces = t
        .service
        .detect(required_image(b.image, "image")?, opts)
        .await?;
    Ok(NhnOk::data(FaceDetails::new(wire_details(&faces))))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    #[schema(value_type = WireImage, required = true)]
    image: Option<WireImage>,
    /// The caller's label for the image, `[a-zA-Z0-9_.\-:]{1,255}`.
    #[schema(pattern = "^[a-zA-Z0-9_.\\-:]{1,255}$")]
    external_image_id: Option<String>,
    /// Register at most this many faces, the largest first (1-20).
    #[schema(value_type = i32, required = true, minimum = 1, maximum = 20)]
    limit: Option<i64>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Registered {
    model_version: String,
    added_face_count: usize,
    added_faces: Vec<WireFace>,
    added_face_details: Vec<WireFaceDetail>,
    not_added_face_count: usize,
    not_added_faces: Vec<WireFaceDetail>,
}

/// Register the largest `limit` faces of an image into a group.
///
/// When the group's quota leaves room for only some, resultCode is 40070
/// with the faces that fit added; when none fit, -40070.
#[utoipa::path(post, path = "/groups/{group_id}", tag = TAG, operation_id = "registerFaces",
    params(GroupPath), request_body = RegisterBody,
    responses((status = 200, description = "Added and not added faces (resultCode 0 or 40070), or an error in the envelope", body = Envelope<Registered>)))]
async fn register(
    t: Tenant,
    NhnPath(p): NhnPath<GroupPath>,
    NhnJson(b): NhnJson<RegisterBody>,
) -> Reply<Registered> {
    let request = RegisterRequest {
        options: t.options(&b.options)?,
        image: required_image(b.image, "image")?,
        external_image_id: b.external_image_id,
        limit: b.limit,
    };
    let out = t.service.register(&t.group(p.group_id), request).await?;
    let code = if out.quota_partial {
        NhnCode::QuotaExceededPartial
    } else {
        NhnCode::Success
    };
    Ok(NhnOk::with_code(
        code,
        Registered {
            model_version: out.model_version,
            added_face_count: out.added.len(),
            added_faces: out.added.iter().map(|(r, _)| r.into()).collect(),
            added_face_details: wire_details(out.added.iter().map(|(_, f)| f)),
            not_added_face_count: out.not_added.len(),
            not_added_faces: wire_details(&out.not_added),
        },
    ))
}

/// Delete one registered face.
#[utoipa::path(delete, path = "/groups/{group_id}/faces/{face_id}", tag = TAG, operation_id = "deleteFace",
    params(FacePath),
    responses((status = 200, description = "Deleted, or an error in the envelope", body = NhnStatus)))]
async fn delete_face(t: Tenant, NhnPath(p): NhnPath<FacePath>) -> Reply<()> {
    t.service.delete_face(&t.face(p)).await?;
    Ok(NhnOk::empty())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct FaceList {
    model_version: String,
    face_count: usize,
    faces: Vec<WireFace>,
    /// The token of the next page; "" when there is none.
    next_token: String,
}

/// List a group's faces, newest first, a page at a time.
#[utoipa::path(get, path = "/groups/{group_id}/faces", tag = TAG, operation_id = "listFaces",
    params(GroupPath, PageQuery),
    responses((status = 200, description = "A page of faces, or an error in the envelope", body = Envelope<FaceList>)))]
async fn list_faces(
    t: Tenant,
    NhnPath(p): NhnPath<GroupPath>,
    NhnQuery(q): NhnQuery<PageQuery>,
) -> Reply<FaceList> {
    let (model_version, page) = t
        .service
        .list_faces(&t.group(p.group_id), q.page()?)
        .await?;
    Ok(NhnOk::data(FaceList {
        model_version,
        face_count: page.items.len(),
        faces: page.items.iter().map(Into::into).collect(),
        next_token: page.next_token,
    }))
}

// ---- matching --------------------------------------------------------------

#[derive(Serialize, ToSchema)]
struct WireMatch {
    face: WireFace,
    /// Calibrated similarity, 0-100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    similarity: f32,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Matches {
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    match_face_count: usize,
    match_faces: Vec<WireMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_face: Option<WireFaceDetail>,
}

impl Matches {
    fn new(matches: &[FaceMatch]) -> Self {
        Matches {
            model_version: None,
            match_face_count: matches.len(),
            match_faces: matches
                .iter()
                .map(|m| WireMatch {
                    face: (&m.face).into(),
                    similarity: m.similarity,
                })
                .collect(),
            source_face: None,
        }
    }
}

fn search_params(q: &MatchQuery) -> Result<SearchParams, ServiceError> {
    Ok(SearchParams {
        limit: q.limit()?,
        threshold: q.threshold()?,
    })
}

/// Search a group with one of its registered faces.
///
/// Matches by similarity descending; the query face itself is not among
/// them.
#[utoipa::path(get, path = "/groups/{group_id}/faces/{face_id}", tag = TAG, operation_id = "searchByFace",
    params(FacePath, MatchQuery),
    responses((status = 200, description = "Matches, or an error in the envelope", body = Envelope<Matches>)))]
async fn search_by_face(
    t: Tenant,
    NhnPath(p): NhnPath<FacePath>,
    NhnQuery(q): NhnQuery<MatchQuery>,
) -> Reply<Matches> {
    let matches = t
        .service
        .search_by_face(&t.face(p), search_params(&q)?)
        .await?;
    Ok(NhnOk::data(Matches::new(&matches)))
}

/// Search a group with the largest face of an image.
#[utoipa::path(post, path = "/groups/{group_id}/search", tag = TAG, operation_id = "searchByImage",
    params(GroupPath, MatchQuery), request_body = ImageBody,
    responses((status = 200, description = "Matches and the query face, or an error in the envelope", body = Envelope<Matches>)))]
async fn search_by_image(
    t: Tenant,
    NhnPath(p): NhnPath<GroupPath>,
    NhnQuery(q): NhnQuery<MatchQuery>,
    NhnJson(b): NhnJson<ImageBody>,
) -> Reply<Matches> {
    let params = search_params(&q)?;
    let opts = t.options(&b.options)?;
    let image = required_image(b.image, "image")?;
    let out = t
        .service
        .search_by_image(&t.group(p.group_id), image, params, opts)
        .await?;
    Ok(NhnOk::data(Matches {
        model_version: Some(out.model_version),
        source_face: Some((&out.source).into()),
        ..Matches::new(&out.matches)
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CompareBody {
    /// Its largest face is compared.
    #[schema(value_type = WireImage, required = true)]
    source_image: Option<WireImage>,
    /// Every face of it is compared.
    #[schema(value_type = WireImage, required = true)]
    target_image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ScoredDetail {
    face_detail: WireFaceDetail,
    /// Calibrated similarity, 0-100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    similarity: f32,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Compared {
    model_version: String,
    matched_face_detail_count: usize,
    matched_face_details: Vec<ScoredDetail>,
    unmatched_face_detail_count: usize,
    unmatched_face_details: Vec<ScoredDetail>,
    source_face: WireFaceDetail,
}

fn scored(v: &[(facegate_core::Face, f32)]) -> Vec<ScoredDetail> {
    v.iter()
        .map(|(f, s)| ScoredDetail {
            face_detail: f.into(),
            similarity: *s,
        })
        .collect()
}

/// Compare the largest face of one image with every face of another.
///
/// Matched (at or above `threshold`) and unmatched lists, by similarity
/// descending. Image errors name the failing image (`...:Source`,
/// `...:Target`).
#[utoipa::path(post, path = "/compare", tag = TAG, operation_id = "compareFaces",
    params(MatchQuery), request_body = CompareBody,
    responses((status = 200, description = "Matched and unmatched faces, or an error in the envelope", body = Envelope<Compared>)))]
async fn compare(
    t: Tenant,
    NhnQuery(q): NhnQuery<MatchQuery>,
    NhnJson(b): NhnJson<CompareBody>,
) -> Reply<Compared> {
    let threshold = q.threshold()?;
    let opts = t.options(&b.options)?;
    let source = required_image(b.source_image, "sourceImage")?;
    let target = required_image(b.target_image, "targetImage")?;
    let out = t.service.compare(source, target, threshold, opts).await?;
    Ok(NhnOk::data(Compared {
        model_version: out.model_version,
        matched_face_detail_count: out.matched.len(),
        matched_face_details: scored(&out.matched),
        unmatched_face_detail_count: out.unmatched.len(),
        unmatched_face_details: scored(&out.unmatched),
        source_face: (&out.source).into(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VerifyBody {
    /// Its largest face is compared with the registered face.
    #[schema(value_type = WireImage, required = true)]
    compare_image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Verified {
    /// Calibrated similarity, 0-100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    similarity: f32,
    face: WireFace,
    source_face: WireFaceDetail,
}

/// Verify an image's largest face against one registered face.
#[utoipa::path(post, path = "/verify/groups/{group_id}/faces/{face_id}", tag = TAG, operation_id = "verifyFace",
    params(FacePath), request_body = VerifyBody,
    responses((status = 200, description = "The similarity, or an error in the envelope", body = Envelope<Verified>)))]
async fn verify(
    t: Tenant,
    NhnPath(p): NhnPath<FacePath>,
    NhnJson(b): NhnJson<VerifyBody>,
) -> Reply<Verified> {
    let opts = t.options(&b.options)?;
    let image = required_image(b.compare_image, "compareImage")?;
    let out = t.service.verify(&t.face(p), image, opts).await?;
    Ok(NhnOk::data(Verified {
        similarity: out.similarity,
        face: (&out.face).into(),
        source_face: (&out.source).into(),
    }))
}

// ---- liveness --------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SpoofingBody {
    #[schema(value_type = WireImage, required = true)]
    image: Option<WireImage>,
    /// The image is a 224x224 face crop: no detection (another size is
    /// -45070); the one face detail has a zero box and no landmarks.
    #[schema(default = false)]
    aligned: Option<bool>,
    #[schema(value_type = Option<super::nhn_common::SpoofingCondition>, default = "balanced")]
    spoofing_condition: Option<String>,
}

/// The face details of a spoofing answer (both NHN surfaces).
pub(super) fn spoofing_details(outcome: &SpoofingOutcome) -> Vec<WireFaceDetail> {
    match outcome {
        SpoofingOutcome::Aligned(liveness) => vec![WireFaceDetail::aligned(*liveness)],
        SpoofingOutcome::Faces(faces) => wire_details(faces),
    }
}

/// Judge each face's liveness.
///
/// `spoofing: true` is a spoof, or a face that could not be judged, with
/// `spoofingReason`.
#[utoipa::path(post, path = "/spoofing", tag = TAG, operation_id = "recoSpoofing",
    request_body = SpoofingBody,
    responses((status = 200, description = "Each face's verdict, or an error in the envelope", body = Envelope<FaceDetails>)))]
async fn spoofing(t: Tenant, NhnJson(b): NhnJson<SpoofingBody>) -> Reply<FaceDetails> {
    let condition = parse_condition(b.spoofing_condition.as_deref())?;
    let image = required_image(b.image, "image")?;
    let outcome = t
        .service
        .spoofing(
            image,
            b.aligned.unwrap_or(false),
            condition,
            Lane::of_tenant(&t.app_key),
        )
        .await?;
    Ok(NhnOk::data(FaceDetails::new(spoofing_details(&outcome))))
}
