//! `GET /metrics`: the Prometheus text exposition, on the public listener
//! or (with `metrics_listen`) on a listener of its own. Counters and
//! histograms are recorded on the request path; the gauges below are
//! sampled from the state at scrape time.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::state::{AppState, Readiness};
use crate::telemetry;

/// Where the exposition is served.
pub const PATH: &str = "/metrics";

/// The content type of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Sets the gauges that are read, not counted: readiness, tenants, store
/// totals, decode memory, batching, models.
fn sample(st: &AppState) {
    let ready = st.readiness() == Readiness::Ready;
    metrics::gauge!(telemetry::READY).set(if ready { 1.0 } else { 0.0 });
    metrics::gauge!(telemetry::TENANTS).set(st.tenants().len() as f64);
    let Ok(service) = st.service() else {
        return;
    };
    let stats = service.stats();
    metrics::gauge!(telemetry::GROUPS).set(stats.groups as f64);
    metrics::gauge!(telemetry::FACES).set(stats.faces as f64);
    if let Some(connected) = stats.listener_connected {
        metrics::gauge!(telemetry::LISTENER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }
    metrics::gauge!(telemetry::DECODE_IN_USE).set(stats.decode_in_use as f64);
    metrics::gauge!(telemetry::DECODE_BUDGET).set(stats.decode_budget as f64);
    metrics::gauge!(telemetry::DECODED_IMAGES).set(stats.decoded_images as f64);
    if let Some(batches) = stats.batches {
        metrics::counter!(telemetry::BATCH_RUNS).absolute(batches.runs);
        metrics::counter!(telemetry::BATCH_FACES).absolute(batches.faces);
        metrics::gauge!(telemetry::BATCH_LARGEST).set(batches.largest as f64);
    }
    for model in stats.models {
        metrics::gauge!(
            telemetry::MODEL_INFO,
            "model" => model,
            "runtime" => stats.runtime,
        )
        .set(1.0);
    }
}

/// The handler of [`PATH`].
#[utoipa::path(get, path = "/metrics", tag = super::openapi::OPERATIONS_TAG, operation_id = "metrics",
    responses((status = 200, description = "The Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    sample(&st);
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], telemetry::render()).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "message": "Not Found" })),
    )
        .into_response()
}

/// The application of the `metrics_listen` listener: [`PATH`] and nothing
/// else.
pub fn router(state: AppState) -> Router {
    telemetry::install();
    Router::new()
        .route(PATH, get(metrics))
        .fallback(not_found)
        .with_state(state)
}
