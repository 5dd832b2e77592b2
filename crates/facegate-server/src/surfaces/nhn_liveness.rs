//! Surface 2: NHN Face Liveness (seeds 000/001):
//! `POST /v1.0/appkeys/{appKey}/spoofing`, `Authorization: {secretKey}`,
//! JSON or multipart body. Same envelope as surface 1; [`to_wire`] is the
//! one error mapping.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::limits::{body_bytes, too_large};
use super::nhn_common::{
    classify, error_response, log_if_internal, nhn_credentials, parse_json, required_image,
    Envelope, NhnCode, NhnOk, SpoofingCondition, WireImage,
};
use super::nhn_reco::{spoofing_details, FaceDetails};
use super::state::AppState;
use crate::error::ServiceError;
use crate::service::{parse_condition, ImageInput, Lane, Service};

/// The OpenAPI tag of this surface's operation.
pub const TAG: &str = "NHN Face Liveness";

/// The route and its documentation, at the server root.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(spoofing))
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

/// A failed request of this surface.
#[derive(Debug)]
pub struct LivenessError(ServiceError);

impl<E: Into<ServiceError>> From<E> for LivenessError {
    fn from(e: E) -> Self {
        LivenessError(e.into())
    }
}

impl IntoResponse for LivenessError {
    fn into_response(self) -> Response {
        to_wire(&self.0)
    }
}

/// An authenticated request: the path's appKey and its liveness secret in
/// `Authorization` matched a tenant; the service to run it on.
pub struct Tenant {
    service: Arc<Service>,
    lane: Lane,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = LivenessError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, LivenessError> {
        let (app_key, secret) = nhn_credentials(parts, st, AUTHORIZATION.as_str()).await?;
        st.tenants()
            .by_liveness_secret(&app_key, &secret)
            .ok_or(ServiceError::Unauthorized)?;
        Ok(Tenant {
            service: st.service()?,
            lane: Lane::of_tenant(&app_key),
        })
    }
}

/// The request: an image and the sensitivity, from a JSON body or a
/// `multipart/form-data` upload (`imageFile`, `spoofingCondition`).
#[derive(Debug)]
pub struct SpoofingForm {
    image: ImageInput,
    condition: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LivenessJsonBody)]
struct JsonBody {
    #[schema(value_type = WireImage, required = true)]
    image: Option<WireImage>,
    #[schema(value_type = Option<SpoofingCondition>, default = "balanced")]
    spoofing_condition: Option<String>,
}

/// The `multipart/form-data` form of the request.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents the parts `read_multipart` reads
struct LivenessUpload {
    /// The image file (JPEG or PNG).
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    image_file: Vec<u8>,
    #[schema(value_type = Option<SpoofingCondition>, default = "balanced")]
    spoofing_condition: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for SpoofingForm {
    type Rejection = LivenessError;

    async fn from_request(req: Request, st: &S) -> Result<Self, LivenessError> {
        let is_multipart = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if is_multipart {
            return Ok(read_multipart(req, st).await?);
        }
        let b: JsonBody = parse_json(&body_bytes(Bytes::from_request(req, st).await)?)?;
        Ok(SpoofingForm {
            image: required_image(b.image, "image")?,
            condition: b.spoofing_condition,
        })
    }
}

/// Judge each face's liveness.
///
/// A JSON body or a `multipart/form-data` upload. A face that could not be
/// judged is `spoofing: true` with `spoofingReason`.
#[utoipa::path(post, path = "/v1.0/appkeys/{app_key}/spoofing", tag = TAG, operation_id = "livenessSpoofing",
    request_body(content(
        (JsonBody = "application/json"),
        (LivenessUpload = "multipart/form-data"),
    )),
    responses((status = 200, description = "Each face's verdict, or an error in the envelope", body = Envelope<FaceDetails>)))]
async fn spoofing(t: Tenant, form: SpoofingForm) -> Result<NhnOk<FaceDetails>, LivenessError> {
    let condition = parse_condition(form.condition.as_deref())?;
    let outcome = t
        .service
        .spoofing(form.image, false, condition, t.lane)
        .await?;
    Ok(NhnOk::data(FaceDetails::new(spoofing_details(&outcome))))
}

async fn read_multipart<S: Send + Sync>(
    req: Request,
    st: &S,
) -> Result<SpoofingForm, ServiceError> {
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
    Ok(SpoofingForm { image, condition })
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ServiceError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ServiceError::invalid("malformed multipart body")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let st = ();
        let SpoofingForm { image, condition } = read_multipart(
            multipart(&[("imageFile", b"abc"), ("spoofingCondition", b"weak")]),
            &st,
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
            let err = read_multipart(multipart(parts), &st).await.unwrap_err();
            assert!(
                matches!(err, ServiceError::InvalidParam(ref m) if m.contains("more than once")),
                "{err:?}"
            );
        }
        let err = read_multipart(multipart(&[("spoofingCondition", b"weak")]), &st)
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::InvalidParam(_)));
    }
}
