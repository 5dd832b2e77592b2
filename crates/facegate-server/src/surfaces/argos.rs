//! Surface 3: Argos Face Liveness (seed 002): `POST /modules/liveness`,
//! `x-api-key`, body `{"faceImage": "<base64>"}`. [`to_wire`] is the one
//! error mapping: 400 with `errorCode` 1016/1017, 401, 500/503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use facegate_core::QualityIssue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::limits::body_bytes;
use super::nhn_common::header_str;
use super::state::{new_id, AppState};
use crate::analyzer::AnalyzerError;
use crate::error::{image_error_text, ServiceError};
use crate::service::{ImageInput, Lane, Service};

/// The API key header of this surface.
pub const API_KEY_HEADER: &str = "x-api-key";
/// `faceImage` missing or empty.
pub const ERROR_MISSING_IMAGE: u32 = 1016;
/// The image could not be analysed (undecodable, no face, ...).
pub const ERROR_NOT_ANALYSABLE: u32 = 1017;

/// The OpenAPI tag of this surface's operation.
pub const TAG: &str = "Argos Face Liveness";

/// The route and its documentation, at the server root.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(liveness))
}

/// Why an Argos request failed.
#[derive(Debug, thiserror::Error)]
pub enum ArgosError {
    /// No or unknown `x-api-key`.
    #[error("unauthorized")]
    Unauthorized,
    /// `faceImage` missing or empty.
    #[error("faceImage is required")]
    MissingImage,
    /// The face is too small, turned, blurred or badly exposed to judge.
    #[error("the face in faceImage cannot be judged: {0:?}")]
    Unjudgeable(QualityIssue),
    /// The service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// An Argos error: 400 (with `errorCode`), 401, 500 or 503.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ArgosError)]
struct ErrorBody<'a> {
    transaction_id: &'a str,
    message: String,
    /// 1016: `faceImage` missing or empty; 1017: the image cannot be
    /// analysed (not decodable, no face, or a face that cannot be judged,
    /// named in `message`). Absent on 401, 500 and 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1016, maximum = 1017)]
    error_code: Option<u32>,
}

/// The `message` of a 1017 answer: fixed wording of ours, never an
/// engine's, decoder's or store's text.
fn not_analysable_message(e: &ServiceError) -> String {
    match e {
        ServiceError::Image { source, .. } => format!("faceImage: {}", image_error_text(source)),
        ServiceError::NoFace(_) => "no face found in faceImage".into(),
        ServiceError::Analyzer(AnalyzerError::Face(_)) => {
            "the face in faceImage could not be analysed".into()
        }
        _ => "faceImage could not be analysed".into(),
    }
}

/// The `message` of a face the quality gate refused.
fn unjudgeable_message(issue: QualityIssue) -> &'static str {
    match issue {
        QualityIssue::FaceTooSmall => "the face in faceImage is too small to judge",
        QualityIssue::Pose => "the face in faceImage is turned too far to judge",
        QualityIssue::Blur => "the face in faceImage is too blurred to judge",
        QualityIssue::Exposure => "the face in faceImage is too dark or too bright to judge",
    }
}

impl IntoResponse for ArgosError {
    fn into_response(self) -> Response {
        to_wire(&self, &new_id(13))
    }
}

/// The one mapping of errors onto this surface.
pub fn to_wire(err: &ArgosError, transaction_id: &str) -> Response {
    let (status, code, message) = match err {
        ArgosError::Unauthorized => (StatusCode::UNAUTHORIZED, None, "Unauthorized".to_string()),
        ArgosError::MissingImage => (
            StatusCode::BAD_REQUEST,
            Some(ERROR_MISSING_IMAGE),
            "faceImage is required".to_string(),
        ),
        ArgosError::Unjudgeable(issue) => (
            StatusCode::BAD_REQUEST,
            Some(ERROR_NOT_ANALYSABLE),
            unjudgeable_message(*issue).to_string(),
        ),
        ArgosError::Service(e) => match e {
            ServiceError::InvalidParam(_)
            | ServiceError::NoFace(_)
            | ServiceError::Image { .. }
            | ServiceError::AlignedSize { .. }
            | ServiceError::Analyzer(AnalyzerError::Face(_)) => {
                tracing::debug!(error = %e, "request refused");
                (
                    StatusCode::BAD_REQUEST,
                    Some(ERROR_NOT_ANALYSABLE),
                    not_analysable_message(e),
                )
            }
            ServiceError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, None, "Unauthorized".to_string())
            }
            ServiceError::NotReady
            | ServiceError::Overloaded
            | ServiceError::Store(facegate_store::StoreError::Timeout) => {
                (StatusCode::SERVICE_UNAVAILABLE, None, e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "internal server error".to_string(),
                )
            }
        },
    };
    (
        status,
        Json(ErrorBody {
            transaction_id,
            message,
            error_code: code,
        }),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
#[schema(as = ArgosScore)]
struct Score {
    /// 0-100, higher is more likely a live person; 50 is the balanced
    /// threshold.
    #[schema(minimum = 0.0, maximum = 100.0)]
    liveness_score: f64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ArgosResult)]
struct Success<'a> {
    /// Always `id_live_face`.
    #[schema(value_type = String, example = "id_live_face")]
    api_type: &'static str,
    result: Score,
    /// Unique per request.
    transaction_id: &'a str,
}

/// The request body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents what `FaceImage` reads
struct ArgosRequest {
    /// The image file, Base64 (a `data:image/...;base64,` prefix is
    /// tolerated).
    #[schema(format = Byte)]
    face_image: String,
}

/// The vendor tells clients to drop a MIME prefix but tolerating one costs
/// nothing: strip `image/png;base64,` (with or without `data:`).
fn strip_mime_prefix(s: &str) -> &str {
    // `get` instead of indexing: a cut inside a UTF-8 character must not panic.
    let head = s.get(..s.len().min(100)).unwrap_or(s);
    match head.find(";base64,") {
        Some(i) if head[..i].contains('/') => &s[i + ";base64,".len()..],
        _ => s,
    }
}

/// An authenticated request: `x-api-key` matched a tenant; the service to
/// run it on.
pub struct Tenant {
    service: Arc<Service>,
    lane: Lane,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ArgosError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ArgosError> {
        let key = header_str(parts, API_KEY_HEADER);
        let lane = st
            .tenants()
            .by_argos_key(key)
            .map(Lane::of_tenant)
            .ok_or(ArgosError::Unauthorized)?;
        Ok(Tenant {
            lane,
            service: st.service()?,
        })
    }
}

/// `{"faceImage": "<base64>"}`: anything that does not yield a non-empty
/// `faceImage` string is 1016; over the body limit is an oversized image
/// (1017), as on the NHN surfaces.
pub struct FaceImage(ImageInput);

impl<S: Send + Sync> FromRequest<S> for FaceImage {
    type Rejection = ArgosError;

    async fn from_request(req: Request, st: &S) -> Result<Self, ArgosError> {
        let body = body_bytes(Bytes::from_request(req, st).await)?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| ArgosError::MissingImage)?;
        match value.get("faceImage") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(FaceImage(
                ImageInput::Base64(strip_mime_prefix(s).to_string()),
            )),
            _ => Err(ArgosError::MissingImage),
        }
    }
}

/// Score a face's liveness, 0-100.
///
/// The largest face of the image is scored; higher is more likely a live
/// person.
#[utoipa::path(post, path = "/modules/liveness", tag = TAG, operation_id = "argosLiveness",
    request_body = ArgosRequest,
    responses(
        (status = 200, description = "The liveness score", body = Success),
        (status = 400, description = "1016 no image; 1017 not analysable or not judgeable", body = ErrorBody),
        (status = 401, description = "Missing or unknown x-api-key", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Still loading, or busy", body = ErrorBody),
    ))]
async fn liveness(t: Tenant, FaceImage(image): FaceImage) -> Result<Response, ArgosError> {
    let live = t.service.liveness_score(image, t.lane).await?;
    if let Some(issue) = live.unjudgeable {
        return Err(ArgosError::Unjudgeable(issue));
    }
    let score = (f64::from(live.real_probability) * 100.0).clamp(0.0, 100.0);
    Ok(Json(Success {
        api_type: "id_live_face",
        result: Score {
            liveness_score: (score * 100.0).round() / 100.0,
        },
        transaction_id: &new_id(13),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(r: Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn error_mapping() {
        let (s, v) = parts(to_wire(&ArgosError::MissingImage, "tx1")).await;
        assert_eq!((s, v["errorCode"].as_u64()), (400, Some(1016)));
        assert_eq!(v["transactionId"], "tx1");
        let (s, v) = parts(to_wire(
            &ArgosError::Service(ServiceError::invalid("no face")),
            "t",
        ))
        .await;
        assert_eq!((s, v["errorCode"].as_u64()), (400, Some(1017)));
        let img = ServiceError::Image {
            role: crate::error::ImageRole::Image,
            source: facegate_image::ImageError::InvalidFormat,
        };
        let (s, v) = parts(to_wire(&ArgosError::Service(img), "t")).await;
        assert_eq!((s, v["errorCode"].as_u64()), (400, Some(1017)));
        let (s, v) = parts(to_wire(&ArgosError::Unauthorized, "t")).await;
        assert_eq!(s, 401);
        assert!(v["message"].is_string());
        let (s, _) = parts(to_wire(&ArgosError::Service(ServiceError::NotReady), "t")).await;
        assert_eq!(s, 503);
        let (s, v) = parts(to_wire(
            &ArgosError::Service(ServiceError::Internal("db at /x".into())),
            "t",
        ))
        .await;
        assert_eq!(s, 500);
        assert!(!v["message"].as_str().unwrap().contains("/x"));
    }

    /// 400 messages are our own fixed words: no decoder, Base64, engine or
    /// network text reaches the client.
    #[tokio::test]
    async fn client_messages_never_carry_internal_text() {
        use facegate_image::{ImageError, UrlError};
        let image = |source| ServiceError::Image {
            role: crate::error::ImageRole::Image,
            source,
        };
        let cases = [
            image(ImageError::Decode(
                "/usr/lib/x86_64/libjpeg.so: bad huffman table".into(),
            )),
            image(ImageError::InvalidBase64(
                "Invalid symbol 42, offset 7.".into(),
            )),
            image(ImageError::InvalidUrl(UrlError::ForbiddenAddress(
                [10, 0, 0, 1].into(),
            ))),
            image(ImageError::InvalidFormat),
            image(ImageError::TooLarge { max_bytes: 3 }),
            ServiceError::NoFace("the image"),
            AnalyzerError::Face("alignment: /models/dlib.onnx NaN".into()).into(),
        ];
        let mut messages = Vec::new();
        for e in cases {
            let (s, v) = parts(to_wire(&ArgosError::Service(e), "t")).await;
            assert_eq!((s, v["errorCode"].as_u64()), (400, Some(1017)), "{v}");
            let m = v["message"].as_str().unwrap().to_string();
            for leak in [
                "/usr",
                "libjpeg",
                "huffman",
                "symbol 42",
                "10.0.0.1",
                "/models",
                "NaN",
            ] {
                assert!(!m.contains(leak), "{m}");
            }
            messages.push(m);
        }
        assert_eq!(messages[5], "no face found in faceImage");
        // An engine failure is a 500 with a fixed text.
        let (s, v) = parts(to_wire(
            &ArgosError::Service(AnalyzerError::Engine("/models/x: oom".into()).into()),
            "t",
        ))
        .await;
        assert_eq!(s, 500);
        assert_eq!(v["message"], "internal server error");
    }

    #[test]
    fn strips_mime_prefixes_only() {
        assert_eq!(strip_mime_prefix("image/png;base64,AAAA"), "AAAA");
        assert_eq!(strip_mime_prefix("data:image/jpeg;base64,/9j/"), "/9j/");
        assert_eq!(strip_mime_prefix("/9j/4AAQ"), "/9j/4AAQ");
        assert_eq!(strip_mime_prefix(""), "");
        let odd = "é".repeat(80);
        assert_eq!(strip_mime_prefix(&odd), odd);
    }
}
