//! Surface 2: NHN Face Liveness (seeds 000/001):
//! `POST /v1.0/appkeys/{appKey}/spoofing`, `Authorization: {secretKey}`,
//! JSON or multipart body. Same envelope as surface 1; [`to_wire`] is the
//! one error mapping.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::nhn_common::{
    classify, error_response, log_if_internal, ok, parse_json, required_image, NhnCode,
    WireFaceDetail, WireImage,
};
use crate::app::AppState;
use crate::error::ServiceError;
use crate::service::{parse_condition, ImageInput};

/// The route, at the server root.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1.0/appkeys/{app_key}/spoofing", post(spoofing))
}

/// The one mapping of [`ServiceError`] onto this surface.
pub fn to_wire(err: &ServiceError) -> Response {
    let (code, detail) = classify(err);
    // This product names its auth failure differently.
    let code = match code {
        NhnCode::UnauthorizedAppKey => NhnCode::UnauthorizedAppKeyOrSecretKey,
        c => c,
    };
    log_if_internal(code, err);
    error_response(code, code.name().to_string(), detail)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonBody {
    image: Option<WireImage>,
    spoofing_condition: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FaceDetails {
    face_detail_count: usize,
    face_details: Vec<WireFaceDetail>,
}

async fn read_multipart(
    st: &AppState,
    req: Request,
) -> Result<(ImageInput, Option<String>), ServiceError> {
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|_| ServiceError::invalid("malformed multipart body"))?;
    let mut image = None;
    let mut condition = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        // A part given twice is ambiguous (which image, which condition?):
        // refused rather than silently taking one.
        match field.name() {
            Some("imageFile") => {
                if image.is_some() {
                    return Err(ServiceError::invalid("imageFile is given more than once"));
                }
                let data = field.bytes().await.map_err(multipart_error)?;
                image = Some(ImageInput::Bytes(data.to_vec()));
            }
            Some("spoofingCondition") => {
                if condition.is_some() {
                    return Err(ServiceError::invalid(
                        "spoofingCondition is given more than once",
                    ));
                }
                condition = Some(field.text().await.map_err(multipart_error)?);
            }
            // Unknown fields are ignored, as JSON's unknown keys are.
            _ => {}
        }
    }
    let image = image.ok_or_else(|| ServiceError::invalid("imageFile is required"))?;
    Ok((image, condition))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ServiceError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::Image {
            role: crate::error::ImageRole::Image,
            source: facegate_image::ImageError::TooLarge {
                max_bytes: facegate_image::Limits::default().max_bytes,
            },
        }
    } else {
        ServiceError::invalid("malformed multipart body")
    }
}

async fn handle(
    st: &AppState,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    req: Request,
) -> Result<Response, ServiceError> {
    let Path(params) = path.map_err(|_| ServiceError::invalid("malformed path"))?;
    let app_key = params.get("app_key").map(String::as_str).unwrap_or("");
    let secret = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    st.tenants()
        .by_liveness_secret(app_key, secret)
        .ok_or(ServiceError::Unauthorized)?;
    let svc = st.service()?;
    let is_multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let (image, condition) = if is_multipart {
        read_multipart(st, req).await?
    } else {
        let body = Bytes::from_request(req, st).await;
        let b: JsonBody = parse_json(&super::nhn_reco::body_bytes(body)?)?;
        (required_image(b.image, "image")?, b.spoofing_condition)
    };
    let condition = parse_condition(condition.as_deref())?;
    let faces = svc.spoofing(image, false, condition).await?;
    Ok(ok(FaceDetails {
        face_detail_count: faces.len(),
        face_details: faces.iter().map(Into::into).collect(),
    }))
}

async fn spoofing(
    State(st): State<AppState>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    req: Request,
) -> Response {
    match handle(&st, path, req).await {
        Ok(r) => r,
        Err(e) => to_wire(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::Tenants;

    const BOUNDARY: &str = "XtestBoundaryX";

    fn multipart(parts: &[(&str, &[u8])]) -> Request {
        let mut body = Vec::new();
        for (name, data) in parts {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        Request::builder()
            .method("POST")
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(axum::body::Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn repeated_parts_are_invalid_params() {
        let st = AppState::new(Tenants::default());
        let (image, condition) = read_multipart(
            &st,
            multipart(&[("imageFile", b"abc"), ("spoofingCondition", b"weak")]),
        )
        .await
        .unwrap();
        assert!(matches!(image, ImageInput::Bytes(ref b) if b == b"abc"));
        assert_eq!(condition.as_deref(), Some("weak"));
        for parts in [
            &[("imageFile", &b"abc"[..]), ("imageFile", b"def")][..],
            &[
                ("imageFile", b"abc"),
                ("spoofingCondition", b"weak"),
                ("spoofingCondition", b"strict"),
            ],
            &[
                ("spoofingCondition", b"weak"),
                ("spoofingCondition", b"weak"),
            ],
        ] {
            let err = read_multipart(&st, multipart(parts)).await.unwrap_err();
            assert!(
                matches!(err, ServiceError::InvalidParam(ref m) if m.contains("more than once")),
                "{err:?}"
            );
        }
        let err = read_multipart(&st, multipart(&[("spoofingCondition", b"weak")]))
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::InvalidParam(_)));
    }
}
