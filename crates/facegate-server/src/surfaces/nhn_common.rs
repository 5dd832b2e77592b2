//! What the two NHN surfaces share: the result code table, the response
//! envelope, the JSON shapes of faces, and the extractors that turn every
//! malformed path, query or body into InvalidParam instead of a framework
//! 4xx.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use facegate_core::{Face, FaceBox, Liveness, QualityIssue};
use facegate_store::{FaceRecord, PageRequest, MAX_PAGE_LIMIT};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::limits::body_bytes;
use crate::analyzer::AnalyzerError;
use crate::error::{image_error_text, ImageRole, ServiceError};
use crate::service::{FaceOptions, ImageInput};

/// The NHN result codes of API.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NhnCode {
    /// 0.
    Success,
    /// -40000.
    InvalidParam,
    /// -40010.
    InvalidGroupId,
    /// -40020.
    DuplicatedGroupId,
    /// -40030.
    NotFoundGroup,
    /// -40040.
    InvalidToken,
    /// -40050.
    NotFoundFaceId,
    /// -40070.
    QuotaExceeded,
    /// 40070 (partial success).
    QuotaExceededPartial,
    /// -41000 (Face Recognition Plus).
    UnauthorizedAppKey,
    /// -41005 (Face Liveness).
    UnauthorizedAppKeyOrSecretKey,
    /// -45020.
    ImageTooLarge,
    /// -45030.
    InvalidImageParameter,
    /// -45040.
    InvalidImageFormat,
    /// -45050.
    InvalidImageUrl,
    /// -45060.
    ImageTimeout,
    /// -45070.
    InvalidImageSize,
    /// -50000.
    InternalServerError,
}

impl NhnCode {
    /// Every code, for exhaustive tests.
    pub const ALL: [NhnCode; 18] = [
        NhnCode::Success,
        NhnCode::InvalidParam,
        NhnCode::InvalidGroupId,
        NhnCode::DuplicatedGroupId,
        NhnCode::NotFoundGroup,
        NhnCode::InvalidToken,
        NhnCode::NotFoundFaceId,
        NhnCode::QuotaExceeded,
        NhnCode::QuotaExceededPartial,
        NhnCode::UnauthorizedAppKey,
        NhnCode::UnauthorizedAppKeyOrSecretKey,
        NhnCode::ImageTooLarge,
        NhnCode::InvalidImageParameter,
        NhnCode::InvalidImageFormat,
        NhnCode::InvalidImageUrl,
        NhnCode::ImageTimeout,
        NhnCode::InvalidImageSize,
        NhnCode::InternalServerError,
    ];

    /// The numeric `resultCode`.
    pub fn code(self) -> i32 {
        match self {
            NhnCode::Success => 0,
            NhnCode::InvalidParam => -40000,
            NhnCode::InvalidGroupId => -40010,
            NhnCode::DuplicatedGroupId => -40020,
            NhnCode::NotFoundGroup => -40030,
            NhnCode::InvalidToken => -40040,
            NhnCode::NotFoundFaceId => -40050,
            NhnCode::QuotaExceeded => -40070,
            NhnCode::QuotaExceededPartial => 40070,
            NhnCode::UnauthorizedAppKey => -41000,
            NhnCode::UnauthorizedAppKeyOrSecretKey => -41005,
            NhnCode::ImageTooLarge => -45020,
            NhnCode::InvalidImageParameter => -45030,
            NhnCode::InvalidImageFormat => -45040,
            NhnCode::InvalidImageUrl => -45050,
            NhnCode::ImageTimeout => -45060,
            NhnCode::InvalidImageSize => -45070,
            NhnCode::InternalServerError => -50000,
        }
    }

    /// The `resultMessage`.
    pub fn name(self) -> &'static str {
        match self {
            NhnCode::Success => "Success",
            NhnCode::InvalidParam => "InvalidParam",
            NhnCode::InvalidGroupId => "InvalidGroupID",
            NhnCode::DuplicatedGroupId => "DuplicatedGroupID",
            NhnCode::NotFoundGroup => "NotFoundGroupError",
            NhnCode::InvalidToken => "InvalidTokenError",
            NhnCode::NotFoundFaceId => "NotFoundFaceIDError",
            NhnCode::QuotaExceeded => "ServiceQuotaExceededException",
            NhnCode::QuotaExceededPartial => "ServiceQuotaExceededPartialSuccessException",
            NhnCode::UnauthorizedAppKey => "UnauthorizedAppKey",
            NhnCode::UnauthorizedAppKeyOrSecretKey => "UnauthorizedAppKeyOrSecretKey",
            NhnCode::ImageTooLarge => "ImageTooLargeException",
            NhnCode::InvalidImageParameter => "InvalidImageParameterException",
            NhnCode::InvalidImageFormat => "InvalidImageFormatException",
            NhnCode::InvalidImageUrl => "InvalidImageURLException",
            NhnCode::ImageTimeout => "ImageTimeoutError",
            NhnCode::InvalidImageSize => "InvalidImageSizeException",
            NhnCode::InternalServerError => "InternalServerError",
        }
    }

    /// The name compare uses for an image error of its source or target
    /// image, spelled as in seed 003's compare table.
    pub fn compare_name(self, role: ImageRole) -> String {
        let Some(suffix) = role.suffix() else {
            return self.name().to_string();
        };
        let base = match self {
            NhnCode::ImageTooLarge => "ImageImageTooLargeException",
            NhnCode::InvalidImageParameter => "InvalidImageParameterException",
            NhnCode::InvalidImageFormat => "ImageInvalidImageFormatException",
            NhnCode::InvalidImageUrl => "ImageInvalidImageURLException",
            NhnCode::ImageTimeout => "ImageImageTimeoutError",
            other => return other.name().to_string(),
        };
        format!("{base}:{suffix}")
    }
}

/// `header` of every NHN response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NhnHeader)]
pub struct Header {
    /// resultCode >= 0.
    pub is_successful: bool,
    /// See [`NhnCode`]: 0 success, 40070 partial success, negative an
    /// error (the table is in the surface's description).
    #[schema(example = 0)]
    pub result_code: i32,
    /// "Success" or the error's name.
    #[schema(example = "Success")]
    pub result_message: String,
    /// A human-readable explanation (errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The body of every NHN answer (HTTP 200 whatever the result):
/// `header`, plus `data` on success when the route returns any.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T: Serialize> {
    header: Header,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

/// The body of an NHN answer without `data`, and of every NHN error
/// (`isSuccessful: false`, the code's name, and a `detail`).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape `envelope` writes without data
pub struct NhnStatus {
    header: Header,
}

/// The `resultCode` of an NHN answer, kept as a response extension for the
/// request log and metrics (the body is already serialised by then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultCode(pub i32);

/// An NHN response: always HTTP 200, JSON envelope.
pub fn envelope<T: Serialize>(header: Header, data: Option<T>) -> Response {
    let code = ResultCode(header.result_code);
    let mut resp = (StatusCode::OK, axum::Json(Envelope { header, data })).into_response();
    resp.extensions_mut().insert(code);
    resp
}

/// A successful answer of either NHN surface: the envelope with a success
/// code (0, or 40070 for a partial success) and `data` when there is any.
pub struct NhnOk<T: Serialize> {
    code: NhnCode,
    data: Option<T>,
}

impl<T: Serialize> NhnOk<T> {
    /// Success with `data`.
    pub fn data(data: T) -> Self {
        Self::with_code(NhnCode::Success, data)
    }

    /// A success or partial-success code with `data`.
    pub fn with_code(code: NhnCode, data: T) -> Self {
        NhnOk {
            code,
            data: Some(data),
        }
    }
}

impl NhnOk<()> {
    /// Success without `data`.
    pub fn empty() -> Self {
        NhnOk {
            code: NhnCode::Success,
            data: None,
        }
    }
}

impl<T: Serialize> IntoResponse for NhnOk<T> {
    fn into_response(self) -> Response {
        envelope(header_for(self.code), self.data)
    }
}

fn header_for(code: NhnCode) -> Header {
    Header {
        is_successful: code.code() >= 0,
        result_code: code.code(),
        result_message: code.name().to_string(),
        detail: None,
    }
}

/// An error response.
pub fn error_response(code: NhnCode, message: String, detail: Option<String>) -> Response {
    envelope::<()>(
        Header {
            is_successful: false,
            result_code: code.code(),
            result_message: message,
            detail,
        },
        None,
    )
}

/// The classification both NHN surfaces use: code, and the detail text
/// that is safe to show (internal failures get a generic text; the real
/// cause goes to the log).
pub fn classify(err: &ServiceError) -> (NhnCode, Option<String>) {
    use facegate_image::ImageError as I;
    use facegate_store::StoreError as S;
    match err {
        ServiceError::InvalidParam(d) => (NhnCode::InvalidParam, Some(d.clone())),
        ServiceError::NoFace(_) => (NhnCode::InvalidParam, Some(err.to_string())),
        ServiceError::Unauthorized => (NhnCode::UnauthorizedAppKey, None),
        ServiceError::AlignedSize { .. } => (NhnCode::InvalidImageSize, Some(err.to_string())),
        ServiceError::Image { source, .. } => {
            let code = match source {
                I::TooLarge { .. } | I::TooManyPixels { .. } | I::OverBudget { .. } => {
                    NhnCode::ImageTooLarge
                }
                I::InvalidBase64(_) => NhnCode::InvalidImageParameter,
                I::InvalidFormat | I::Decode(_) => NhnCode::InvalidImageFormat,
                I::TooSmall { .. } => NhnCode::InvalidParam,
                I::InvalidUrl(_) => NhnCode::InvalidImageUrl,
                I::Timeout => NhnCode::ImageTimeout,
                _ => NhnCode::InvalidParam,
            };
            (code, Some(image_error_text(source)))
        }
        ServiceError::Store(s) => match s {
            S::InvalidGroupId => (NhnCode::InvalidGroupId, Some(s.to_string())),
            S::InvalidExternalImageId | S::InvalidParam(_) | S::ModelVersionMismatch { .. } => {
                (NhnCode::InvalidParam, Some(s.to_string()))
            }
            S::DuplicatedGroupId => (NhnCode::DuplicatedGroupId, None),
            S::GroupNotFound => (NhnCode::NotFoundGroup, None),
            S::FaceNotFound => (NhnCode::NotFoundFaceId, None),
            // The reason names forgery vs expiry; clients get neither.
            S::InvalidToken(_) => (NhnCode::InvalidToken, None),
            S::QuotaExceeded { .. } => (NhnCode::QuotaExceeded, Some(s.to_string())),
            S::Timeout => (NhnCode::InternalServerError, Some(s.to_string())),
            _ => (NhnCode::InternalServerError, None),
        },
        ServiceError::NotReady | ServiceError::Overloaded => {
            (NhnCode::InternalServerError, Some(err.to_string()))
        }
        // The request's image holds a face the engine cannot work with: a
        // parameter error, as a missing face is. The engine's text stays
        // in the log.
        ServiceError::Analyzer(AnalyzerError::Face(_)) => {
            (NhnCode::InvalidParam, Some(FACE_NOT_ANALYSABLE.to_string()))
        }
        ServiceError::Analyzer(AnalyzerError::Engine(_)) | ServiceError::Internal(_) => {
            (NhnCode::InternalServerError, None)
        }
    }
}

/// The detail of a face the engine could not analyse.
pub const FACE_NOT_ANALYSABLE: &str =
    "a face in the image could not be analysed (unusable landmarks or crop)";

/// Logs what the client will not see.
pub fn log_if_internal(code: NhnCode, err: &ServiceError) {
    if code == NhnCode::InternalServerError {
        tracing::error!(error = %err, "request failed");
    } else {
        tracing::debug!(code = code.code(), error = %err, "request refused");
    }
}

// ---- JSON shapes ---------------------------------------------------------

/// `{url, bytes}`: exactly one of the two. JPEG or PNG, at most 3,000,000
/// bytes, at least 60 px across the face for liveness.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WireImage {
    /// An http(s) URL facegate downloads (no private addresses; 5 s; at
    /// most 3 redirects, each checked).
    #[schema(format = "uri", example = "https://photos.example/portrait.jpg")]
    pub url: Option<String>,
    /// The image file, Base64.
    #[schema(format = Byte)]
    pub bytes: Option<String>,
}

impl WireImage {
    /// Into a service input; `field` names the JSON field in errors.
    pub fn into_input(self, field: &str) -> Result<ImageInput, ServiceError> {
        ImageInput::from_fields(self.url, self.bytes, field)
    }
}

/// A required image object.
pub fn required_image(img: Option<WireImage>, field: &str) -> Result<ImageInput, ServiceError> {
    img.ok_or_else(|| ServiceError::invalid(format!("{field} is required")))?
        .into_input(field)
}

/// `bbox`: the face's corners as fractions of the image's width (x) and
/// height (y), 0-1.
#[derive(Debug, Serialize, ToSchema)]
pub struct WireBox {
    #[schema(minimum = 0.0, maximum = 1.0)]
    x0: f32,
    #[schema(minimum = 0.0, maximum = 1.0)]
    y0: f32,
    #[schema(minimum = 0.0, maximum = 1.0)]
    x1: f32,
    #[schema(minimum = 0.0, maximum = 1.0)]
    y1: f32,
}

impl From<FaceBox> for WireBox {
    fn from(b: FaceBox) -> Self {
        WireBox {
            x0: b.x0,
            y0: b.y0,
            x1: b.x1,
            y1: b.y1,
        }
    }
}

const LANDMARK_NAMES: [&str; 5] = ["leftEye", "rightEye", "nose", "leftLip", "rightLip"];

/// One landmark, in fractions of the image like `bbox`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WireLandmark {
    /// `leftEye`, `rightEye`, `nose`, `leftLip` or `rightLip` (left and
    /// right as seen in the image).
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "leftEye")]
    kind: &'static str,
    #[schema(minimum = 0.0, maximum = 1.0)]
    x: f32,
    #[schema(minimum = 0.0, maximum = 1.0)]
    y: f32,
}

/// `orientation`: head pose in degrees.
#[derive(Debug, Serialize, ToSchema)]
pub struct WireOrientation {
    /// Yaw (turn left/right), -90 to 90.
    #[schema(minimum = -90.0, maximum = 90.0)]
    x: f32,
    /// Pitch (nod up/down), -90 to 90.
    #[schema(minimum = -90.0, maximum = 90.0)]
    y: f32,
    /// Roll (tilt), -180 to 180.
    #[schema(minimum = -180.0, maximum = 180.0)]
    z: f32,
}

/// The `spoofingReason` of a face that could not be judged.
fn spoofing_reason(issue: QualityIssue) -> &'static str {
    match issue {
        QualityIssue::FaceTooSmall => "FACE_TOO_SMALL",
        QualityIssue::Pose => "POSE",
        QualityIssue::Blur => "BLUR",
        QualityIssue::Exposure => "EXPOSURE",
    }
}

/// A face detail (`faceDetails[]`, `sourceFace`, ...). A field whose
/// request option is off is absent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireFaceDetail {
    bbox: WireBox,
    /// Five landmarks ordered by x; empty for an aligned crop.
    #[schema(max_items = 5)]
    landmarks: Vec<WireLandmark>,
    /// With `orientation: true` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    orientation: Option<WireOrientation>,
    /// Whether the face wears a mask; with `mask: true` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<bool>,
    /// Whether the face is judged a spoof; with `spoofing: true`, and
    /// always on the spoofing routes. A face that cannot be judged is
    /// `true` with `spoofingReason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    spoofing: Option<bool>,
    /// API.md's extension: why a face was not judged (absent when it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(FACE_TOO_SMALL|POSE|BLUR|EXPOSURE)$")]
    spoofing_reason: Option<&'static str>,
    /// Why registration's quality gate refused the face (`notAddedFaces`
    /// only, with `register_quality_gate` on).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(FACE_TOO_SMALL|POSE|BLUR|EXPOSURE)$")]
    reason: Option<&'static str>,
    /// Detector confidence, 0-1 (0 for an aligned crop).
    #[schema(minimum = 0.0, maximum = 1.0)]
    confidence: f32,
}

impl WireFaceDetail {
    /// The detail of an aligned crop (`aligned: true`): the whole image is
    /// the face, so it has no box, landmarks or confidence of its own.
    pub fn aligned(liveness: Liveness) -> Self {
        WireFaceDetail {
            bbox: FaceBox::default().into(),
            landmarks: Vec::new(),
            orientation: None,
            mask: None,
            spoofing: Some(liveness.is_spoof),
            spoofing_reason: liveness.unjudgeable.map(spoofing_reason),
            reason: None,
            confidence: 0.0,
        }
    }
}

/// A face whose geometry is in fractions of its image, as the service
/// reports faces; landmarks in the API's by-x order.
impl From<&Face> for WireFaceDetail {
    fn from(f: &Face) -> Self {
        WireFaceDetail {
            bbox: f.bbox.into(),
            landmarks: f
                .landmarks
                .ordered_by_x()
                .as_array()
                .into_iter()
                .zip(LANDMARK_NAMES)
                .map(|(p, kind)| WireLandmark {
                    kind,
                    x: p.x,
                    y: p.y,
                })
                .collect(),
            orientation: f.pose.map(|p| WireOrientation {
                x: p.yaw,
                y: p.pitch,
                z: p.roll,
            }),
            mask: f.mask,
            spoofing: f.liveness.map(|l| l.is_spoof),
            spoofing_reason: f.liveness.and_then(|l| l.unjudgeable).map(spoofing_reason),
            reason: f.quality_issue.map(spoofing_reason),
            confidence: f.confidence,
        }
    }
}

/// The face details of a list of faces.
pub fn wire_details<'a>(faces: impl IntoIterator<Item = &'a Face>) -> Vec<WireFaceDetail> {
    faces.into_iter().map(Into::into).collect()
}

/// A registered face (`addedFaces[]`, `faces[]`, `matchFaces[].face`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireFace {
    /// A UUID given at registration.
    #[schema(format = "uuid")]
    face_id: String,
    /// The UUID shared by the faces registered from one image.
    #[schema(format = "uuid")]
    image_id: String,
    /// The caller's label, when registered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    external_image_id: Option<String>,
    bbox: WireBox,
    /// Detector confidence, 0-1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    confidence: f32,
}

impl From<&FaceRecord> for WireFace {
    fn from(f: &FaceRecord) -> Self {
        WireFace {
            face_id: f.face_id.clone(),
            image_id: f.image_id.clone(),
            external_image_id: f.external_image_id.clone(),
            bbox: f.bbox.into(),
            confidence: f.confidence,
        }
    }
}

// ---- request parsing -----------------------------------------------------

/// Parses a JSON body; any syntax or type error is InvalidParam.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| {
        // Only the kind and position: serde_json's own message can quote the
        // offending value, which may be image data.
        let kind = match e.classify() {
            serde_json::error::Category::Data => "a field has the wrong type or value",
            serde_json::error::Category::Eof => "the body ends too early",
            _ => "the body is not valid JSON",
        };
        ServiceError::invalid(format!(
            "malformed JSON body: {kind} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// An optional integer query parameter.
pub fn query_int(value: Option<&str>, name: &str) -> Result<Option<i64>, ServiceError> {
    value
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| ServiceError::invalid(format!("{name} must be an integer")))
        })
        .transpose()
}

/// An optional numeric query parameter.
pub fn query_num(value: Option<&str>, name: &str) -> Result<Option<f32>, ServiceError> {
    value
        .map(|v| match v.trim().parse::<f32>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(ServiceError::invalid(format!("{name} must be a number"))),
        })
        .transpose()
}

/// `?limit=&next-token=` of the two listings.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1-200; required unless `next-token` is given.
    #[param(value_type = Option<i32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `nextToken` of the previous page; it fixes the page size it was
    /// issued with.
    #[serde(rename = "next-token")]
    next_token: Option<String>,
}

impl PageQuery {
    /// Which page: a non-empty token pages on, and whatever limit is beside
    /// it is ignored, even one that does not parse, because the token fixes
    /// the limit it was issued with (API.md: "a different limit beside a
    /// token is ignored"); otherwise `limit` is required, 1-200.
    pub fn page(self) -> Result<PageRequest, ServiceError> {
        if let Some(token) = self.next_token.filter(|t| !t.is_empty()) {
            return Ok(PageRequest::Next(token));
        }
        match query_int(self.limit.as_deref(), "limit")? {
            None => Err(ServiceError::invalid("limit is required")),
            Some(l) if (1..=MAX_PAGE_LIMIT as i64).contains(&l) => {
                Ok(PageRequest::First(l as usize))
            }
            Some(_) => Err(ServiceError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE_LIMIT}"
            ))),
        }
    }
}

/// `?limit=&threshold=` of search and compare.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatchQuery {
    /// At most this many matches, 1-4096 (required by search; compare
    /// ignores it).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 4096)]
    limit: Option<String>,
    /// Only faces at or above this similarity, 1-100 (required). 90 is a
    /// strict operating point; docs/models.md tabulates false accepts per
    /// threshold.
    #[param(value_type = f32, required = true, minimum = 1, maximum = 100)]
    threshold: Option<String>,
}

impl MatchQuery {
    /// `limit` as an integer, when given.
    pub fn limit(&self) -> Result<Option<i64>, ServiceError> {
        query_int(self.limit.as_deref(), "limit")
    }

    /// `threshold` as a finite number, when given.
    pub fn threshold(&self) -> Result<Option<f32>, ServiceError> {
        query_num(self.threshold.as_deref(), "threshold")
    }
}

// ---- extractors ------------------------------------------------------------
//
// Their rejections are parse errors (InvalidParam, or ImageTooLarge for an
// oversized body), which both NHN products answer identically, so they
// share one rejection type instead of one per surface.

/// A path, query or body an NHN surface could not parse.
#[derive(Debug)]
pub struct NhnRejection(pub ServiceError);

impl IntoResponse for NhnRejection {
    fn into_response(self) -> Response {
        let (code, detail) = classify(&self.0);
        log_if_internal(code, &self.0);
        error_response(code, code.name().to_string(), detail)
    }
}

/// A header's value as text; empty when absent or not text (which then
/// matches no key).
pub fn header_str<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[derive(Deserialize)]
struct AppKeyPath {
    app_key: String,
}

/// What both NHN products authenticate a request with: the path's
/// `{app_key}` and the key in the product's `header`.
pub async fn nhn_credentials<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    header: &str,
) -> Result<(String, String), ServiceError> {
    let NhnPath(AppKeyPath { app_key }) = NhnPath::from_request_parts(parts, state)
        .await
        .map_err(|r| r.0)?;
    Ok((app_key, header_str(parts, header).to_string()))
}

/// Typed path parameters.
pub struct NhnPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for NhnPath<T> {
    type Rejection = NhnRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| NhnPath(t))
            .map_err(|_| NhnRejection(ServiceError::invalid("malformed path")))
    }
}

/// Typed query parameters.
pub struct NhnQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for NhnQuery<T> {
    type Rejection = NhnRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| NhnQuery(t))
            .map_err(|_| NhnRejection(ServiceError::invalid("malformed query string")))
    }
}

/// A JSON body within the route's size limit.
pub struct NhnJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for NhnJson<T> {
    type Rejection = NhnRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = body_bytes(Bytes::from_request(req, state).await).map_err(NhnRejection)?;
        parse_json(&body).map(NhnJson).map_err(NhnRejection)
    }
}

/// The face options common to detect/register/search/compare/verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireOptions {
    /// Report head pose (`orientation`).
    #[schema(default = true)]
    pub orientation: Option<bool>,
    /// Report whether each face wears a mask.
    #[schema(default = true)]
    pub mask: Option<bool>,
    /// Judge each face's liveness (`spoofing`).
    #[schema(default = false)]
    pub spoofing: Option<bool>,
    /// `weak`, `balanced` or `strict`: strict flags more faces as spoofs.
    #[schema(value_type = Option<SpoofingCondition>, default = "balanced")]
    pub spoofing_condition: Option<String>,
}

/// The liveness sensitivity (`spoofingCondition`); anything else is -40000.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SpoofingCondition {
    /// Flags fewest faces.
    Weak,
    /// The default.
    Balanced,
    /// Flags most faces.
    Strict,
}

impl WireOptions {
    /// Validated options.
    pub fn parse(&self) -> Result<FaceOptions, ServiceError> {
        FaceOptions::from_wire(
            self.orientation,
            self.mask,
            self.spoofing,
            self.spoofing_condition.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_image::{ImageError, UrlError};
    use facegate_store::StoreError;

    #[test]
    fn code_table_matches_the_contract() {
        let expected = [
            (0, "Success"),
            (-40000, "InvalidParam"),
            (-40010, "InvalidGroupID"),
            (-40020, "DuplicatedGroupID"),
            (-40030, "NotFoundGroupError"),
            (-40040, "InvalidTokenError"),
            (-40050, "NotFoundFaceIDError"),
            (-40070, "ServiceQuotaExceededException"),
            (40070, "ServiceQuotaExceededPartialSuccessException"),
            (-41000, "UnauthorizedAppKey"),
            (-41005, "UnauthorizedAppKeyOrSecretKey"),
            (-45020, "ImageTooLargeException"),
            (-45030, "InvalidImageParameterException"),
            (-45040, "InvalidImageFormatException"),
            (-45050, "InvalidImageURLException"),
            (-45060, "ImageTimeoutError"),
            (-45070, "InvalidImageSizeException"),
            (-50000, "InternalServerError"),
        ];
        let got: Vec<(i32, &str)> = NhnCode::ALL.iter().map(|c| (c.code(), c.name())).collect();
        assert_eq!(got, expected);
    }

    fn img(source: ImageError) -> ServiceError {
        ServiceError::Image {
            role: ImageRole::Image,
            source,
        }
    }

    #[test]
    fn every_error_classifies() {
        let cases: Vec<(ServiceError, NhnCode)> = vec![
            (ServiceError::invalid("x"), NhnCode::InvalidParam),
            (ServiceError::Unauthorized, NhnCode::UnauthorizedAppKey),
            (
                ServiceError::AlignedSize {
                    expected: 224,
                    width: 1,
                    height: 1,
                },
                NhnCode::InvalidImageSize,
            ),
            (
                img(ImageError::TooLarge { max_bytes: 1 }),
                NhnCode::ImageTooLarge,
            ),
            (
                img(ImageError::TooManyPixels {
                    width: 1,
                    height: 1,
                    max_pixels: 1,
                }),
                NhnCode::ImageTooLarge,
            ),
            (
                img(ImageError::InvalidBase64("x".into())),
                NhnCode::InvalidImageParameter,
            ),
            (img(ImageError::InvalidFormat), NhnCode::InvalidImageFormat),
            (
                img(ImageError::Decode("x".into())),
                NhnCode::InvalidImageFormat,
            ),
            (
                img(ImageError::TooSmall {
                    width: 1,
                    height: 1,
                    min_side: 80,
                }),
                NhnCode::InvalidParam,
            ),
            (
                img(ImageError::InvalidUrl(UrlError::Scheme)),
                NhnCode::InvalidImageUrl,
            ),
            (img(ImageError::Timeout), NhnCode::ImageTimeout),
            (StoreError::InvalidGroupId.into(), NhnCode::InvalidGroupId),
            (
                StoreError::InvalidExternalImageId.into(),
                NhnCode::InvalidParam,
            ),
            (
                StoreError::InvalidParam("x".into()).into(),
                NhnCode::InvalidParam,
            ),
            (
                StoreError::DuplicatedGroupId.into(),
                NhnCode::DuplicatedGroupId,
            ),
            (StoreError::GroupNotFound.into(), NhnCode::NotFoundGroup),
            (StoreError::FaceNotFound.into(), NhnCode::NotFoundFaceId),
            (
                StoreError::InvalidToken("expired").into(),
                NhnCode::InvalidToken,
            ),
            (
                StoreError::QuotaExceeded {
                    max_faces_per_group: 1,
                }
                .into(),
                NhnCode::QuotaExceeded,
            ),
            (
                StoreError::Corrupt("x".into()).into(),
                NhnCode::InternalServerError,
            ),
            (ServiceError::NotReady, NhnCode::InternalServerError),
            (
                ServiceError::Internal("x".into()),
                NhnCode::InternalServerError,
            ),
            (
                AnalyzerError::Engine("x".into()).into(),
                NhnCode::InternalServerError,
            ),
            (
                AnalyzerError::Face("x".into()).into(),
                NhnCode::InvalidParam,
            ),
            (ServiceError::NoFace("the image"), NhnCode::InvalidParam),
        ];
        for (err, code) in cases {
            assert_eq!(classify(&err).0, code, "{err:?}");
        }
    }

    #[test]
    fn internal_details_and_token_reasons_stay_private() {
        let (_, d) = classify(&ServiceError::Internal("secret path /x".into()));
        assert_eq!(d, None);
        let (_, d) = classify(&StoreError::InvalidToken("bad mac").into());
        assert_eq!(d, None);
        let (_, d) = classify(&AnalyzerError::Engine("/models/x.onnx: bad".into()).into());
        assert_eq!(d, None);
        // A per-face failure is the client's, but the engine's words are not.
        let (code, d) = classify(&AnalyzerError::Face("alignment: /models/x".into()).into());
        assert_eq!(code, NhnCode::InvalidParam);
        assert_eq!(d.as_deref(), Some(FACE_NOT_ANALYSABLE));
        // Decoder and Base64 library messages are not echoed.
        for source in [
            ImageError::Decode("libjpeg at /usr/lib: huffman".into()),
            ImageError::InvalidBase64("Invalid byte 42, offset 0.".into()),
            ImageError::InvalidUrl(UrlError::ForbiddenAddress([10, 0, 0, 1].into())),
        ] {
            let (_, d) = classify(&img(source));
            let d = d.unwrap();
            for leak in ["/usr/lib", "huffman", "byte 42", "10.0.0.1"] {
                assert!(!d.contains(leak), "{d}");
            }
        }
    }

    #[test]
    fn compare_names_follow_the_seed() {
        let names: Vec<String> = [
            NhnCode::ImageTooLarge,
            NhnCode::InvalidImageParameter,
            NhnCode::InvalidImageFormat,
            NhnCode::InvalidImageUrl,
            NhnCode::ImageTimeout,
        ]
        .iter()
        .map(|c| c.compare_name(ImageRole::Target))
        .collect();
        assert_eq!(
            names,
            [
                "ImageImageTooLargeException:Target",
                "InvalidImageParameterException:Target",
                "ImageInvalidImageFormatException:Target",
                "ImageInvalidImageURLException:Target",
                "ImageImageTimeoutError:Target",
            ]
        );
        assert_eq!(
            NhnCode::ImageTooLarge.compare_name(ImageRole::Source),
            "ImageImageTooLargeException:Source"
        );
        assert_eq!(
            NhnCode::ImageTooLarge.compare_name(ImageRole::Image),
            "ImageTooLargeException"
        );
        assert_eq!(
            NhnCode::InvalidParam.compare_name(ImageRole::Source),
            "InvalidParam"
        );
    }

    async fn body_of(r: Response) -> serde_json::Value {
        assert_eq!(r.status(), StatusCode::OK);
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn envelopes_are_http_200_with_header() {
        let v = body_of(crate::surfaces::nhn_reco::to_wire(
            &ServiceError::Unauthorized,
        ))
        .await;
        assert_eq!(
            v,
            serde_json::json!({"header": {"isSuccessful": false, "resultCode": -41000,
                                          "resultMessage": "UnauthorizedAppKey"}})
        );
        let v = body_of(crate::surfaces::nhn_liveness::to_wire(
            &ServiceError::Unauthorized,
        ))
        .await;
        assert_eq!(v["header"]["resultCode"], -41005);
        assert_eq!(
            v["header"]["resultMessage"],
            "UnauthorizedAppKeyOrSecretKey"
        );
        let v = body_of(crate::surfaces::nhn_reco::to_wire(&ServiceError::Image {
            role: ImageRole::Source,
            source: ImageError::Timeout,
        }))
        .await;
        assert_eq!(
            v["header"]["resultMessage"],
            "ImageImageTimeoutError:Source"
        );
        assert!(v["header"]["detail"].is_string());
        let v = body_of(
            NhnOk::with_code(NhnCode::QuotaExceededPartial, serde_json::json!({"a": 1}))
                .into_response(),
        )
        .await;
        assert_eq!(v["header"]["isSuccessful"], true);
        assert_eq!(v["header"]["resultCode"], 40070);
        assert_eq!(v["data"]["a"], 1);
        let v = body_of(NhnOk::empty().into_response()).await;
        assert_eq!(v["header"]["resultMessage"], "Success");
        assert!(v.get("data").is_none());
    }

    #[test]
    fn query_parsing() {
        assert_eq!(query_int(Some(" 12"), "limit").unwrap(), Some(12));
        assert_eq!(query_int(None, "limit").unwrap(), None);
        assert!(query_int(Some("1.5"), "limit").is_err());
        assert!(query_num(Some("nan"), "threshold").is_err());
        assert_eq!(query_num(Some("1.5"), "threshold").unwrap(), Some(1.5));
    }

    fn page(limit: Option<&str>, token: Option<&str>) -> Result<PageRequest, ServiceError> {
        PageQuery {
            limit: limit.map(str::to_string),
            next_token: token.map(str::to_string),
        }
        .page()
    }

    /// Beside a token, whatever limit the client sent is ignored, even one
    /// that does not parse; without a token (or with an empty one) the
    /// limit is required and checked.
    #[test]
    fn a_token_fixes_the_page_and_limit_is_checked_without_one() {
        assert_eq!(page(Some("2"), None).unwrap(), PageRequest::First(2));
        for limit in [None, Some("x"), Some("-7"), Some("500")] {
            assert_eq!(
                page(limit, Some("tok")).unwrap(),
                PageRequest::Next("tok".into())
            );
        }
        for (limit, token) in [
            (None, None),
            (Some("x"), None),
            (Some("0"), None),
            (Some("201"), Some("")),
            (Some("garbage"), Some("")),
        ] {
            assert!(
                matches!(page(limit, token), Err(ServiceError::InvalidParam(_))),
                "{limit:?} {token:?}"
            );
        }
        assert_eq!(
            page(Some("200"), Some("")).unwrap(),
            PageRequest::First(200)
        );
    }
}
