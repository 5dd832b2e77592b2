//! Surface 1: NHN Face Recognition Plus (seed 003), under
//! `/nhn-face-reco/v1.0/appkeys/{appKey}`, authenticated by `x-nhn-apikey`.
//! Every answer is HTTP 200 with the NHN envelope; [`RecoError`] is the one
//! place errors become result codes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::limits::COMPARE_BODY_LIMIT;
use super::nhn_common::{
    classify, error_response, log_if_internal, nhn_credentials, required_image, wire_details,
    MatchQuery, NhnCode, NhnJson, NhnOk, NhnPath, NhnQuery, PageQuery, WireFace, WireFaceDetail,
    WireImage, WireOptions,
};
use super::state::AppState;
use crate::error::ServiceError;
use crate::service::{
    parse_condition, FaceMatch, FaceRef, GroupRef, RegisterRequest, SearchParams, Service,
    SpoofingOutcome,
};

/// The API key header of this surface.
pub const API_KEY_HEADER: &str = "x-nhn-apikey";

/// The routes, relative to `/nhn-face-reco/v1.0/appkeys/{app_key}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", post(create_group).get(list_groups))
        .route(
            "/groups/{group_id}",
            get(get_group).delete(delete_group).post(register),
        )
        .route("/groups/{group_id}/faces", get(list_faces))
        .route(
            "/groups/{group_id}/faces/{face_id}",
            get(search_by_face).delete(delete_face),
        )
        .route("/groups/{group_id}/search", post(search_by_image))
        .route("/detect", post(detect))
        .route(
            "/compare",
            post(compare).layer(DefaultBodyLimit::max(COMPARE_BODY_LIMIT)),
        )
        .route("/verify/groups/{group_id}/faces/{face_id}", post(verify))
        .route("/spoofing", post(spoofing))
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
#[derive(Deserialize)]
struct GroupPath {
    group_id: String,
}

/// `{group_id}` and `{face_id}` of the path.
#[derive(Deserialize)]
struct FacePath {
    group_id: String,
    face_id: String,
}

impl Tenant {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupBody {
    group_id: Option<String>,
}

async fn create_group(t: Tenant, NhnJson(b): NhnJson<CreateGroupBody>) -> Reply<()> {
    let id = b
        .group_id
        .ok_or_else(|| ServiceError::invalid("groupId is required"))?;
    t.service.create_group(&t.group(id)).await?;
    Ok(NhnOk::empty())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupSummary {
    group_id: String,
    model_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    group_count: usize,
    groups: Vec<GroupSummary>,
    next_token: String,
}

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDetail {
    group_id: String,
    model_version: String,
    create_time: String,
    face_count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDetails {
    group_count: usize,
    groups: Vec<GroupDetail>,
}

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

async fn delete_group(t: Tenant, NhnPath(p): NhnPath<GroupPath>) -> Reply<()> {
    t.service.delete_group(&t.group(p.group_id)).await?;
    Ok(NhnOk::empty())
}

// ---- faces -----------------------------------------------------------------

#[derive(Deserialize)]
struct ImageBody {
    image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FaceDetails {
    face_detail_count: usize,
    face_details: Vec<WireFaceDetail>,
}

impl FaceDetails {
    fn new(face_details: Vec<WireFaceDetail>) -> Self {
        FaceDetails {
            face_detail_count: face_details.len(),
            face_details,
        }
    }
}

async fn detect(t: Tenant, NhnJson(b): NhnJson<ImageBody>) -> Reply<FaceDetails> {
    let opts = b.options.parse()?;
    let faces = t
        .service
        .detect(required_image(b.image, "image")?, opts)
        .await?;
    Ok(NhnOk::data(FaceDetails::new(wire_details(&faces))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    image: Option<WireImage>,
    external_image_id: Option<String>,
    limit: Option<i64>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Registered {
    model_version: String,
    added_face_count: usize,
    added_faces: Vec<WireFace>,
    added_face_details: Vec<WireFaceDetail>,
    not_added_face_count: usize,
    not_added_faces: Vec<WireFaceDetail>,
}

async fn register(
    t: Tenant,
    NhnPath(p): NhnPath<GroupPath>,
    NhnJson(b): NhnJson<RegisterBody>,
) -> Reply<Registered> {
    let request = RegisterRequest {
        options: b.options.parse()?,
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

async fn delete_face(t: Tenant, NhnPath(p): NhnPath<FacePath>) -> Reply<()> {
    t.service.delete_face(&t.face(p)).await?;
    Ok(NhnOk::empty())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FaceList {
    model_version: String,
    face_count: usize,
    faces: Vec<WireFace>,
    next_token: String,
}

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

#[derive(Serialize)]
struct WireMatch {
    face: WireFace,
    similarity: f32,
}

#[derive(Serialize)]
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

async fn search_by_image(
    t: Tenant,
    NhnPath(p): NhnPath<GroupPath>,
    NhnQuery(q): NhnQuery<MatchQuery>,
    NhnJson(b): NhnJson<ImageBody>,
) -> Reply<Matches> {
    let params = search_params(&q)?;
    let opts = b.options.parse()?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompareBody {
    source_image: Option<WireImage>,
    target_image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScoredDetail {
    face_detail: WireFaceDetail,
    similarity: f32,
}

#[derive(Serialize)]
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

async fn compare(
    t: Tenant,
    NhnQuery(q): NhnQuery<MatchQuery>,
    NhnJson(b): NhnJson<CompareBody>,
) -> Reply<Compared> {
    let threshold = q.threshold()?;
    let opts = b.options.parse()?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyBody {
    compare_image: Option<WireImage>,
    #[serde(flatten)]
    options: WireOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    similarity: f32,
    face: WireFace,
    source_face: WireFaceDetail,
}

async fn verify(
    t: Tenant,
    NhnPath(p): NhnPath<FacePath>,
    NhnJson(b): NhnJson<VerifyBody>,
) -> Reply<Verified> {
    let opts = b.options.parse()?;
    let image = required_image(b.compare_image, "compareImage")?;
    let out = t.service.verify(&t.face(p), image, opts).await?;
    Ok(NhnOk::data(Verified {
        similarity: out.similarity,
        face: (&out.face).into(),
        source_face: (&out.source).into(),
    }))
}

// ---- liveness --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpoofingBody {
    image: Option<WireImage>,
    aligned: Option<bool>,
    spoofing_condition: Option<String>,
}

/// The face details of a spoofing answer (both NHN surfaces).
pub(super) fn spoofing_details(outcome: &SpoofingOutcome) -> Vec<WireFaceDetail> {
    match outcome {
        SpoofingOutcome::Aligned(liveness) => vec![WireFaceDetail::aligned(*liveness)],
        SpoofingOutcome::Faces(faces) => wire_details(faces),
    }
}

async fn spoofing(t: Tenant, NhnJson(b): NhnJson<SpoofingBody>) -> Reply<FaceDetails> {
    let condition = parse_condition(b.spoofing_condition.as_deref())?;
    let image = required_image(b.image, "image")?;
    let outcome = t
        .service
        .spoofing(image, b.aligned.unwrap_or(false), condition)
        .await?;
    Ok(NhnOk::data(FaceDetails::new(spoofing_details(&outcome))))
}
