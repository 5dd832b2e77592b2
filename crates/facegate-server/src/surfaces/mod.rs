//! The HTTP side: the three vendor-compatible surfaces, each a set of thin
//! typed handlers plus one error type whose `IntoResponse` is its wire
//! mapping, and the router that joins them with health endpoints, request
//! logging, early refusals and panic handling.
//!
//! * [`state`]: what handlers share; [`limits`]: request size limits.
//! * [`nhn_common`]: the NHN envelope, codes, face JSON and extractors.
//! * [`nhn_reco`], [`nhn_liveness`], [`argos`]: one module per product.
//! * [`openapi`]: `/openapi.json` and `/docs`, from the handlers'
//!   annotations; [`scrape`]: `/metrics`.

pub mod argos;
pub mod console;
pub mod embedded;
pub mod limits;
pub mod nhn_common;
pub mod nhn_liveness;
pub mod nhn_reco;
pub mod openapi;
pub mod scrape;
pub mod state;

use std::any::Any;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::connections::Admission;
use crate::error::ServiceError;
use crate::telemetry;
use limits::{body_limit, too_large, BODY_LIMIT, MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI_LEN};
pub use state::{new_id, AppState, Readiness};

/// The error a request gets before any handler runs, in its surface's
/// format: `None` when the path belongs to no surface.
pub fn surface_error(path: &str, err: ServiceError) -> Option<Response> {
    if path.starts_with("/nhn-face-reco/") {
        Some(nhn_reco::to_wire(&err))
    } else if path.starts_with("/v1.0/") {
        Some(nhn_liveness::to_wire(&err))
    } else if path.starts_with("/modules/") {
        Some(argos::to_wire(
            &argos::ArgosError::Service(err),
            &new_id(13),
        ))
    } else {
        None
    }
}

/// What a request is refused for before it reaches a handler: limits on its
/// head and declared body size, and the health-only reserve connections.
fn refuse_early(req: &Request) -> Option<(StatusCode, ServiceError)> {
    let path = req.uri().path();
    if req.extensions().get::<Admission>() == Some(&Admission::Reserve)
        && path != "/healthz"
        && path != "/readyz"
    {
        return Some((StatusCode::SERVICE_UNAVAILABLE, ServiceError::Overloaded));
    }
    let target_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if target_len > MAX_URI_LEN {
        return Some((
            StatusCode::URI_TOO_LONG,
            ServiceError::invalid("request target is too long"),
        ));
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ServiceError::invalid("request headers are too large"),
        ));
    }
    // Refused from the header alone, so a client that waits for
    // `100 Continue` never sends the body.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit(path) as u64) {
        return Some((StatusCode::PAYLOAD_TOO_LARGE, too_large()));
    }
    None
}

/// Which product a path belongs to (the `surface` label of metrics).
fn surface_of(path: &str) -> &'static str {
    if path.starts_with("/nhn-face-reco/") {
        "nhn_reco"
    } else if path.starts_with("/v1.0/") {
        "nhn_liveness"
    } else if path.starts_with("/modules/") {
        "argos"
    } else if path == "/healthz" || path == "/readyz" {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    }
}

/// The `method` label: the methods the routes use, anything else `other`
/// (a client may send any token as a method; labels stay bounded).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// Request id, one structured log line per request (request id, method,
/// route, status, result code, latency; never headers or bodies, which
/// carry keys and images), and the request metrics.
///
/// The route logged is the matched template (`.../appkeys/{app_key}/...`),
/// never the raw path: a raw path can smuggle an appKey past any pattern
/// (`/appkeys/x/../KEY/...`). Unmatched paths are logged as such. The
/// result code is the NHN `resultCode` where the surface has one, else the
/// HTTP status.
async fn request_context(req: Request, next: Next) -> Response {
    let id = new_id(16);
    let _in_flight = telemetry::InFlight::start();
    let matched = req.extensions().get::<MatchedPath>();
    let surface = surface_of(matched.map_or(req.uri().path(), MatchedPath::as_str));
    let route = matched
        .map_or("(no route)", MatchedPath::as_str)
        .to_string();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
    );
    let started = Instant::now();
    let early = refuse_early(&req).map(|(status, err)| {
        let message = err.to_string();
        let mut resp = surface_error(req.uri().path(), err).unwrap_or_else(|| {
            (status, Json(serde_json::json!({ "message": message }))).into_response()
        });
        // The body was not read: the connection cannot be reused.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        resp
    });
    let mut resp = match early {
        Some(resp) => resp,
        None => next.run(req).instrument(span.clone()).await,
    };
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let code = resp
        .extensions()
        .get::<nhn_common::ResultCode>()
        .map_or(i64::from(status), |c| i64::from(c.0));
    // Outside the span, which would repeat its fields: the line stands on
    // its own in either log format.
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        result_code = code,
        elapsed_ms = elapsed.as_millis() as u64,
        "handled"
    );
    let method = method_label(&method);
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "surface" => surface,
        "route" => route.clone(),
        "method" => method,
        "code" => code.to_string(),
    )
    .increment(1);
    metrics::histogram!(
        telemetry::HTTP_DURATION,
        "surface" => surface,
        "route" => route,
        "method" => method,
    )
    .record(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Unknown routes and methods get each surface's error format, not the
/// framework's plain-text 404/405.
async fn fallback(uri: Uri) -> Response {
    surface_error(uri.path(), ServiceError::invalid("no such route")).unwrap_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "message": "Not Found" })),
        )
            .into_response()
    })
}

/// What a panic said (its payload is a `String` or `&str` almost always).
fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// A panic as the service error the surfaces already know: an internal
/// error, whose text goes to the log and never to the client.
fn panicked(payload: &(dyn Any + Send)) -> ServiceError {
    ServiceError::Internal(format!("handler panicked: {}", panic_text(payload)))
}

/// A handler of surface 1 panicked: the envelope with -50000.
fn nhn_reco_panic(payload: Box<dyn Any + Send>) -> Response {
    nhn_reco::to_wire(&panicked(&*payload))
}

/// A handler of surface 2 panicked: the envelope with -50000.
fn nhn_liveness_panic(payload: Box<dyn Any + Send>) -> Response {
    nhn_liveness::to_wire(&panicked(&*payload))
}

/// A handler of surface 3 panicked: Argos's 500 with a transaction id.
fn argos_panic(payload: Box<dyn Any + Send>) -> Response {
    argos::to_wire(
        &argos::ArgosError::Service(panicked(&*payload)),
        &new_id(13),
    )
}

/// Anything else panicked (health, fallback): a plain JSON 500.
fn plain_panic(payload: Box<dyn Any + Send>) -> Response {
    tracing::error!(panic = %panic_text(&*payload), "handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "message": "Internal Server Error" })),
    )
        .into_response()
}

/// Liveness of the process: 200 as soon as it serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = openapi::OPERATIONS_TAG, operation_id = "healthz",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", content_type = "application/json")))]
async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Readiness, and which tenant set is in force: its generation (1 at
/// start, +1 per reload) and a fingerprint of its appKeys, so `facegate
/// tenants list` can tell whether an edit of the config file is live.
#[utoipa::path(get, path = "/readyz", tag = openapi::OPERATIONS_TAG, operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: `{status, tenants: {generation, count, digest}}`", content_type = "application/json"),
        (status = 503, description = "Still loading models, or failed to", content_type = "application/json"),
    ))]
async fn readyz(State(st): State<AppState>) -> Response {
    let tenants = st.tenants();
    let tenants = serde_json::json!({
        "generation": st.tenants_generation(),
        "count": tenants.len(),
        "digest": tenants.digest(),
    });
    let (status, word) = match st.readiness() {
        Readiness::Ready => (StatusCode::OK, "ready"),
        Readiness::Loading => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
        Readiness::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
    };
    (
        status,
        Json(serde_json::json!({ "status": word, "tenants": tenants })),
    )
        .into_response()
}

/// The whole HTTP application over `state`, `/metrics` included.
///
/// A panic in a handler does not drop the connection: each surface answers
/// it in its own error format (an internal error; the panic's text goes to
/// the log only), everything else with a plain JSON 500.
pub fn router(state: AppState) -> Router {
    router_with(state, PublicRoutes::default())
}

/// The optional routes of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicRoutes {
    /// `/metrics` (with `metrics_listen` set it is served there instead,
    /// by [`scrape::router`], and this router answers it 404 like any
    /// unknown path).
    pub metrics: bool,
    /// The web console under `/console/` (`console` in the config).
    pub console: bool,
}

impl Default for PublicRoutes {
    fn default() -> Self {
        PublicRoutes {
            metrics: true,
            console: true,
        }
    }
}

/// [`router`] with only the optional routes `optional` names.
pub fn router_with(state: AppState, optional: PublicRoutes) -> Router {
    // Installed here so requests are counted from the first one, wherever
    // /metrics is served.
    telemetry::install();
    let (app, doc) = routes(optional).split_for_parts();
    app.fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .layer(Extension(openapi::Document::new(&openapi::finish(doc))))
        .layer(CatchPanicLayer::custom(plain_panic))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

/// The OpenAPI document of [`router_with`]`(_, optional)`, without
/// building a server (`facegate openapi`).
pub fn openapi_document(optional: PublicRoutes) -> utoipa::openapi::OpenApi {
    openapi::finish(routes(optional).into_openapi())
}

/// Every route with its documentation: the one list both the router and
/// `/openapi.json` come from.
fn routes(optional: PublicRoutes) -> OpenApiRouter<AppState> {
    let mut app = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .merge(openapi::router());
    if optional.metrics {
        app = app.routes(routes!(scrape::metrics));
    }
    if optional.console {
        app = app.merge(console::router());
    }
    app.nest(
        "/nhn-face-reco/v1.0/appkeys/{app_key}",
        nhn_reco::router().layer(CatchPanicLayer::custom(nhn_reco_panic)),
    )
    .merge(nhn_liveness::router().layer(CatchPanicLayer::custom(nhn_liveness_panic)))
    .merge(argos::router().layer(CatchPanicLayer::custom(argos_panic)))
}

#[cfg(test)]
mod panic_tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> Response {
        panic!("boom: secret at /var/lib/facegate/master.key")
    }

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        (status, serde_json::from_str(&text).expect("a JSON body"))
    }

    #[tokio::test]
    async fn a_panic_answers_in_the_surfaces_format() {
        let app = Router::new()
            .route(
                "/reco",
                get(boom).layer(CatchPanicLayer::custom(nhn_reco_panic)),
            )
            .route(
                "/live",
                get(boom).layer(CatchPanicLayer::custom(nhn_liveness_panic)),
            )
            .route(
                "/argos",
                get(boom).layer(CatchPanicLayer::custom(argos_panic)),
            )
            .route("/other", get(boom))
            .layer(CatchPanicLayer::custom(plain_panic));
        for path in ["/reco", "/live"] {
            let (status, v) = call(app.clone(), path).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                v,
                serde_json::json!({"header": {"isSuccessful": false, "resultCode": -50000,
                                              "resultMessage": "InternalServerError"}})
            );
        }
        let (status, v) = call(app.clone(), "/argos").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(v["transactionId"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(v["message"], "internal server error");
        let (status, v) = call(app, "/other").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v, serde_json::json!({"message": "Internal Server Error"}));
    }
}
