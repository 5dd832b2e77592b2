//! Metrics and audit logging: the names of every metric `/metrics`
//! exposes (docs/deployment.md lists them), the process-wide Prometheus
//! recorder, the small helpers the request path records through, and the
//! redaction of tenants in audit lines.
//!
//! Labels are bounded by construction: surfaces, route templates, result
//! codes, operation and error-kind names, model versions. Never a face id,
//! a group id or an appKey.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};

use facegate_store::StoreError;

/// Requests answered, by `surface`, `route`, `method` and `code`.
pub const HTTP_REQUESTS: &str = "facegate_http_requests_total";
/// Request latency, by `surface`, `route` and `method`.
pub const HTTP_DURATION: &str = "facegate_http_request_duration_seconds";
/// Requests being handled right now.
pub const HTTP_IN_FLIGHT: &str = "facegate_http_requests_in_flight";
/// URL image downloads.
pub const FETCH_DURATION: &str = "facegate_image_fetch_duration_seconds";
/// Decoding images to pixels.
pub const DECODE_DURATION: &str = "facegate_image_decode_duration_seconds";
/// How long admission waited for decode memory.
pub const DECODE_WAIT: &str = "facegate_decode_admission_wait_seconds";
/// Decode admissions, by `outcome`.
pub const DECODE_ADMISSIONS: &str = "facegate_decode_admissions_total";
/// Requests waiting for decode memory right now.
pub const DECODE_WAITING: &str = "facegate_decode_admission_waiting";
/// Decode memory reserved right now.
pub const DECODE_IN_USE: &str = "facegate_decode_memory_in_use_bytes";
/// The decode memory budget.
pub const DECODE_BUDGET: &str = "facegate_decode_memory_budget_bytes";
/// Decoded images alive right now.
pub const DECODED_IMAGES: &str = "facegate_decoded_images";
/// Vision engine calls, by `operation`.
pub const ANALYSIS_DURATION: &str = "facegate_analysis_duration_seconds";
/// The vision engine's stages within `analyze`, by `stage`.
pub const STAGE_DURATION: &str = "facegate_analysis_stage_duration_seconds";
/// Store calls, by `operation`.
pub const STORE_DURATION: &str = "facegate_store_operation_duration_seconds";
/// Store calls that failed, by `operation` and `kind`.
pub const STORE_ERRORS: &str = "facegate_store_errors_total";
/// Groups held, all tenants.
pub const GROUPS: &str = "facegate_groups";
/// Faces held, all tenants and groups.
pub const FACES: &str = "facegate_faces";
/// PostgreSQL change listener connected (1) or not (0).
pub const LISTENER_CONNECTED: &str = "facegate_store_listener_connected";
/// One per loaded embedding model, labelled `model` and `runtime`.
pub const MODEL_INFO: &str = "facegate_model_info";
/// 1 once models and store are loaded.
pub const READY: &str = "facegate_ready";
/// Configured tenants.
pub const TENANTS: &str = "facegate_tenants";
/// Counter: runs of the per-face networks (batches, of one included).
pub const BATCH_RUNS: &str = "facegate_batch_runs_total";
/// Counter: faces those runs carried.
pub const BATCH_FACES: &str = "facegate_batch_faces_total";
/// Gauge: the largest batch run so far.
pub const BATCH_LARGEST: &str = "facegate_batch_largest";

/// Upper bounds (seconds) of every latency histogram.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded in when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide recorder, installed on first use: `None` when another
/// recorder was installed first (an embedding program's), in which case
/// `/metrics` has nothing to render.
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    let upkeep = handle.clone();
                    // Without scrapes, histogram samples pile up until the
                    // next upkeep.
                    let _ = std::thread::Builder::new()
                        .name("facegate-metrics".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        });
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "Requests answered, by surface, route template, method and code (NHN resultCode, else HTTP status)"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Request latency from routing to the response head, by surface, route template and method"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "Requests being handled right now");
    describe_histogram!(FETCH_DURATION, Unit::Seconds, "Downloading image URLs");
    describe_histogram!(
        DECODE_DURATION,
        Unit::Seconds,
        "Decoding an admitted image to pixels"
    );
    describe_histogram!(
        DECODE_WAIT,
        Unit::Seconds,
        "Time an image waited for decode memory before admission or refusal"
    );
    describe_counter!(
        DECODE_ADMISSIONS,
        "Decode memory admissions, by outcome (admitted, busy, over_budget)"
    );
    describe_gauge!(DECODE_WAITING, "Images waiting for decode memory right now");
    describe_gauge!(
        DECODE_IN_USE,
        Unit::Bytes,
        "Decode memory reserved by images being decoded and analysed"
    );
    describe_gauge!(DECODE_BUDGET, Unit::Bytes, "The decode memory budget");
    describe_gauge!(DECODED_IMAGES, "Decoded images in memory right now");
    describe_histogram!(
        ANALYSIS_DURATION,
        Unit::Seconds,
        "Vision engine calls (detection, landmarks, embedding, liveness, mask as asked), by operation"
    );
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time of one analysis in each vision stage (detect, landmarks, embed, liveness, mask, pose), summed over its faces"
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Store calls including the wait for a blocking thread, by operation"
    );
    describe_counter!(
        STORE_ERRORS,
        "Store calls that failed, by operation and kind"
    );
    describe_gauge!(GROUPS, "Groups held, all tenants");
    describe_gauge!(FACES, "Faces held, all tenants and groups");
    describe_gauge!(
        LISTENER_CONNECTED,
        "PostgreSQL change listener connected (1) or reconnecting (0); absent on SQLite"
    );
    describe_gauge!(
        MODEL_INFO,
        "1 for each embedding model loaded, labelled with the inference runtime"
    );
    describe_gauge!(READY, "1 once the store is open and the models are loaded");
    describe_gauge!(TENANTS, "Configured tenants");
    describe_counter!(
        BATCH_RUNS,
        "Runs of the per-face networks (embedders, liveness), batches of one included; absent when the runtime does not batch"
    );
    describe_counter!(
        BATCH_FACES,
        "Faces those runs carried (faces / runs = mean batch)"
    );
    describe_gauge!(BATCH_LARGEST, "The largest batch run so far");
}

/// Seconds since `started`, as recorded.
pub fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// Counts one request in flight until dropped (a cancelled or panicking
/// request is released too).
pub struct InFlight(());

impl InFlight {
    /// Counts one more request in flight.
    pub fn start() -> Self {
        metrics::gauge!(HTTP_IN_FLIGHT).increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

/// Counts one image waiting for decode memory until dropped.
pub struct Waiting(());

impl Waiting {
    /// Counts one more waiting image.
    pub fn start() -> Self {
        metrics::gauge!(DECODE_WAITING).increment(1.0);
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!(DECODE_WAITING).decrement(1.0);
    }
}

/// A bounded name for what went wrong in the store.
pub fn store_error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::InvalidGroupId
        | StoreError::InvalidExternalImageId
        | StoreError::InvalidParam(_)
        | StoreError::ModelVersionMismatch { .. }
        | StoreError::DimensionMismatch { .. } => "invalid",
        StoreError::DuplicatedGroupId => "duplicate",
        StoreError::GroupNotFound | StoreError::FaceNotFound => "not_found",
        StoreError::InvalidToken(_) => "invalid_token",
        StoreError::QuotaExceeded { .. } => "quota",
        StoreError::Timeout => "timeout",
        StoreError::DecryptionFailed { .. }
        | StoreError::UnknownKeyId { .. }
        | StoreError::KeyMismatch { .. } => "key",
        StoreError::Corrupt(_) | StoreError::SchemaTooNew { .. } => "corrupt",
        StoreError::Io { .. } => "io",
        StoreError::Database(_) => "database",
        _ => "other",
    }
}

/// Records one store call of `operation` that took since `started`.
pub fn store_call<T>(operation: &'static str, started: Instant, result: &Result<T, StoreError>) {
    metrics::histogram!(STORE_DURATION, "operation" => operation).record(seconds_since(started));
    if let Err(e) = result {
        metrics::counter!(STORE_ERRORS, "operation" => operation, "kind" => store_error_kind(e))
            .increment(1);
    }
}

/// How a tenant appears in logs: a short, stable digest of its appKey,
/// enough to tell tenants apart and to find one's lines given its appKey,
/// never the appKey itself.
pub fn tenant_tag(app_key: &str) -> String {
    let digest = Sha256::digest(format!("facegate-tenant:{app_key}").as_bytes());
    format!("t-{}", hex::encode(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tags_are_stable_distinct_and_hide_the_key() {
        let a = tenant_tag("app-secret-a");
        assert_eq!(a, tenant_tag("app-secret-a"));
        assert_ne!(a, tenant_tag("app-secret-b"));
        assert!(!a.contains("secret"));
        assert_eq!(a.len(), 14);
    }

    #[test]
    fn store_errors_have_bounded_kinds() {
        assert_eq!(store_error_kind(&StoreError::GroupNotFound), "not_found");
        assert_eq!(store_error_kind(&StoreError::Timeout), "timeout");
        assert_eq!(
            store_error_kind(&StoreError::Corrupt("face f-123".into())),
            "corrupt"
        );
    }
}
