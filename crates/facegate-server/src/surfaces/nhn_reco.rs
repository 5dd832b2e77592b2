//! Surface 1: NHN Face Recognition Plus (seed 003), under
//! `/nhn-face-reco/v1.0/appkeys/{appKey}`, authenticated by `x-nhn-apikey`.
//! Every answer is HTTP 200 with the NHN envelope; [`to_wire`] is the one
//! place errors become result codes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::nhn_common::{
    classify, error_response, log_if_internal, ok, ok_empty, parse_json, query_int, query_num,
    required_image, with_code, NhnCode, WireFace, WireFaceDetail, WireImage, WireOptions,
};
use crate::app::{AppState, COMPARE_BODY_LIMIT};
use crate::error::{ImageRole, ServiceError};
use crate::service::Service;

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

type PathParams = Result<Path<HashMap<String, String>>, PathRejection>;
type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

/// What every handler starts from once authenticated.
struct Ctx {
    svc: Arc<Service>,
    tenant: String,
    params: HashMap<String, String>,
}

impl Ctx {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

fn authorize(st: &AppState, headers: &HeaderMap, path: PathParams) -> Result<Ctx, ServiceError> {
    let Path(params) = path.map_err(|_| ServiceError::invalid("malformed path"))?;
    let app_key = params.get("app_key").map(String::as_str).unwrap_or("");
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let tenant = st
        .tenants()
        .by_face_api_key(app_key, key)
        .ok_or(ServiceError::Unauthorized)?
        .to_string();
    Ok(Ctx {
        svc: st.service()?,
        tenant,
        params,
    })
}

fn query(q: QueryParams) -> Result<HashMap<String, String>, ServiceError> {
    q.map(|Query(m)| m)
        .map_err(|_| ServiceError::invalid("malformed query string"))
}

/// The body, or ImageTooLarge when it is over the size limit (the only
/// way a JSON request gets that big is an oversized image). A body that
/// breaks off (bad chunking, shorter than its Content-Length, stalled past
/// the body timeout) is a malformed request.
pub(crate) fn body_bytes(body: Body) -> Result<Bytes, ServiceError> {
    use axum::extract::rejection::FailedToBufferBody;
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ServiceError::Image {
                role: ImageRole::Image,
                source: facegate_image::ImageError::TooLarge {
                    max_bytes: facegate_image::Limits::default().max_bytes,
                },
            }
        }
        _ => ServiceError::invalid("the request body is malformed or incomplete"),
    })
}

async fn respond(fut: impl Future<Output = Result<Response, ServiceError>>) -> Response {
    match fut.await {
        Ok(r) => r,
        Err(e) => to_wire(&e),
    }
}

fn token(q: &HashMap<String, String>) -> Option<String> {
    q.get("next-token").cloned()
}

// ---- groups ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupBody {
    group_id: Option<String>,
}

async fn create_group(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let b: CreateGroupBody = parse_json(&body_bytes(body)?)?;
        let id = b
            .group_id
            .ok_or_else(|| ServiceError::invalid("groupId is required"))?;
        c.svc.create_group(&c.tenant, &id).await?;
        Ok(ok_empty())
    })
    .await
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

async fn list_groups(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    q: QueryParams,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let q = query(q)?;
        let page = c
            .svc
            .list_groups(&c.tenant, query_int(&q, "limit"), token(&q))
            .await?;
        Ok(ok(GroupList {
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
    })
    .await
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

async fn get_group(State(st): State<AppState>, headers: HeaderMap, path: PathParams) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let g = c.svc.get_group(&c.tenant, c.param("group_id")).await?;
        Ok(ok(GroupDetails {
            group_count: 1,
            groups: vec![GroupDetail {
                group_id: g.group_id,
                model_version: g.model_version,
                create_time: g.created_at.to_wire_seconds(),
                face_count: g.face_count,
            }],
        }))
    })
    .await
}

async fn delete_group(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        c.svc.delete_group(&c.tenant, c.param("group_id")).await?;
        Ok(ok_empty())
    })
    .await
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

async fn detect(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let b: ImageBody = parse_json(&body_bytes(body)?)?;
        let opts = b.options.parse()?;
        let faces = c
            .svc
            .detect(required_image(b.image, "image")?, opts)
            .await?;
        Ok(ok(FaceDetails {
            face_detail_count: faces.len(),
            face_details: faces.iter().map(Into::into).collect(),
        }))
    })
    .await
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
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let b: RegisterBody = parse_json(&body_bytes(body)?)?;
        let opts = b.options.parse()?;
        let image = required_image(b.image, "image")?;
        let out = c
            .svc
            .register(
                &c.tenant,
                c.param("group_id"),
                image,
                b.external_image_id,
                b.limit,
                opts,
            )
            .await?;
        let code = if out.quota_partial {
            NhnCode::QuotaExceededPartial
        } else {
            NhnCode::Success
        };
        Ok(with_code(
            code,
            Registered {
                model_version: out.model_version,
                added_face_count: out.added.len(),
                added_faces: out.added.iter().map(|(r, _)| r.into()).collect(),
                added_face_details: out.added.iter().map(|(_, d)| d.into()).collect(),
                not_added_face_count: out.not_added.len(),
                not_added_faces: out.not_added.iter().map(Into::into).collect(),
            },
        ))
    })
    .await
}

async fn delete_face(State(st): State<AppState>, headers: HeaderMap, path: PathParams) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        c.svc
            .delete_face(&c.tenant, c.param("group_id"), c.param("face_id"))
            .await?;
        Ok(ok_empty())
    })
    .await
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
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    q: QueryParams,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let q = query(q)?;
        let (model_version, page) = c
            .svc
            .list_faces(
                &c.tenant,
                c.param("group_id"),
                query_int(&q, "limit"),
                token(&q),
            )
            .await?;
        Ok(ok(FaceList {
            model_version,
            face_count: page.items.len(),
            faces: page.items.iter().map(Into::into).collect(),
            next_token: page.next_token,
        }))
    })
    .await
}

#[derive(Serialize)]
struct WireMatch {
    face: WireFace,
    similarity: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchesById {
    match_face_count: usize,
    match_faces: Vec<WireMatch>,
}

fn wire_matches(m: &[crate::service::FaceMatch]) -> Vec<WireMatch> {
    m.iter()
        .map(|m| WireMatch {
            face: (&m.face).into(),
            similarity: m.similarity,
        })
        .collect()
}

async fn search_by_face(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    q: QueryParams,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let q = query(q)?;
        let matches = c
            .svc
            .search_by_face(
                &c.tenant,
                c.param("group_id"),
                c.param("face_id"),
                query_int(&q, "limit")?,
                query_num(&q, "threshold")?,
            )
            .await?;
        Ok(ok(MatchesById {
            match_face_count: matches.len(),
            match_faces: wire_matches(&matches),
        }))
    })
    .await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchesByImage {
    model_version: String,
    match_face_count: usize,
    match_faces: Vec<WireMatch>,
    source_face: WireFaceDetail,
}

async fn search_by_image(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    q: QueryParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let q = query(q)?;
        let (limit, threshold) = (query_int(&q, "limit")?, query_num(&q, "threshold")?);
        let b: ImageBody = parse_json(&body_bytes(body)?)?;
        let opts = b.options.parse()?;
        let out = c
            .svc
            .search_by_image(
                &c.tenant,
                c.param("group_id"),
                required_image(b.image, "image")?,
                limit,
                threshold,
                opts,
            )
            .await?;
        Ok(ok(MatchesByImage {
            model_version: out.model_version,
            match_face_count: out.matches.len(),
            match_faces: wire_matches(&out.matches),
            source_face: (&out.source).into(),
        }))
    })
    .await
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

fn scored(v: &[(crate::service::FaceDetail, f32)]) -> Vec<ScoredDetail> {
    v.iter()
        .map(|(d, s)| ScoredDetail {
            face_detail: d.into(),
            similarity: *s,
        })
        .collect()
}

async fn compare(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    q: QueryParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let q = query(q)?;
        let threshold = query_num(&q, "threshold")?;
        let b: CompareBody = parse_json(&body_bytes(body)?)?;
        let opts = b.options.parse()?;
        let source = required_image(b.source_image, "sourceImage")?;
        let target = required_image(b.target_image, "targetImage")?;
        let out = c.svc.compare(source, target, threshold, opts).await?;
        Ok(ok(Compared {
            model_version: out.model_version,
            matched_face_detail_count: out.matched.len(),
            matched_face_details: scored(&out.matched),
            unmatched_face_detail_count: out.unmatched.len(),
            unmatched_face_details: scored(&out.unmatched),
            source_face: (&out.source).into(),
        }))
    })
    .await
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
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let b: VerifyBody = parse_json(&body_bytes(body)?)?;
        let opts = b.options.parse()?;
        let image = required_image(b.compare_image, "compareImage")?;
        let out = c
            .svc
            .verify(
                &c.tenant,
                c.param("group_id"),
                c.param("face_id"),
                image,
                opts,
            )
            .await?;
        Ok(ok(Verified {
            similarity: out.similarity,
            face: (&out.face).into(),
            source_face: (&out.source).into(),
        }))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpoofingBody {
    image: Option<WireImage>,
    aligned: Option<bool>,
    spoofing_condition: Option<String>,
}

async fn spoofing(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: PathParams,
    body: Body,
) -> Response {
    respond(async {
        let c = authorize(&st, &headers, path)?;
        let b: SpoofingBody = parse_json(&body_bytes(body)?)?;
        let condition = crate::service::parse_condition(b.spoofing_condition.as_deref())?;
        let image = required_image(b.image, "image")?;
        let faces = c
            .svc
            .spoofing(image, b.aligned.unwrap_or(false), condition)
            .await?;
        Ok(ok(FaceDetails {
            face_detail_count: faces.len(),
            face_details: faces.iter().map(Into::into).collect(),
        }))
    })
    .await
}
