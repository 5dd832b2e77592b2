//! End-to-end: what an operator watches. `/metrics` is valid Prometheus
//! text exposition and moves with requests, carries no tenant or group
//! identifiers, and moves to a listener of its own with `metrics_listen`.

use facegate_test_support::server as common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use facegate_server::StartOptions;
use serde_json::json;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: the samples in order, and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest of `s`.
fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').unwrap();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r.to_string());
        }
        let (name, r) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\": {line}"));
        assert!(is_label_name(name), "label name {name:?}: {line}");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().unwrap_or_else(|| panic!("open label: {line}"));
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?}: {line}"),
                },
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "label {name} twice: {line}"
        );
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample line belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(base);
            }
        }
    }
    None
}

/// Parses the text exposition format strictly: every non-comment line is
/// `name{labels} value [timestamp]`; every sample's family has one TYPE
/// line before its samples, at most one HELP line, and its samples are
/// contiguous; histograms have cumulative buckets ending at `+Inf` equal
/// to their count.
fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut helps = HashMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.trim_start().splitn(3, ' ');
            match words.next() {
                Some("HELP") => {
                    let name = words.next().expect("HELP name");
                    assert!(is_name(name), "{line}");
                    assert!(
                        helps.insert(name.to_string(), ()).is_none(),
                        "HELP twice: {line}"
                    );
                    assert!(
                        !finished.iter().any(|f| f == name),
                        "HELP after samples: {line}"
                    );
                }
                Some("TYPE") => {
                    let name = words.next().expect("TYPE name");
                    let kind = words.next().expect("TYPE kind");
                    assert!(is_name(name), "{line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(
                        out.types
                            .insert(name.to_string(), kind.to_string())
                            .is_none(),
                        "TYPE twice: {line}"
                    );
                    assert!(
                        !out.samples
                            .iter()
                            .any(|s| family_of(&s.name, &out.types) == Some(name)),
                        "TYPE after samples: {line}"
                    );
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
        let name = &line[..name_end];
        assert!(is_name(name), "metric name {name:?}: {line}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], line)
        } else {
            (BTreeMap::new(), line[name_end..].to_string())
        };
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"));
        let mut parts = rest.split(' ');
        let value = parse_value(parts.next().unwrap())
            .unwrap_or_else(|| panic!("value not a number: {line}"));
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("timestamp: {line}"));
        }
        assert!(parts.next().is_none(), "trailing text: {line}");
        let family = family_of(name, &out.types)
            .unwrap_or_else(|| panic!("sample without a TYPE line: {line}"))
            .to_string();
        if current.as_deref() != Some(&family) {
            assert!(
                !finished.contains(&family),
                "samples of {family} are not contiguous"
            );
            if let Some(c) = current.take() {
                finished.push(c);
            }
            current = Some(family.clone());
        }
        let kind = out.types[&family].as_str();
        match kind {
            "counter" | "gauge" => assert_eq!(name, family, "{line}"),
            "histogram" if name.ends_with("_bucket") => {
                assert!(labels.contains_key("le"), "bucket without le: {line}")
            }
            _ => {}
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for s in &out.samples {
        if s.name.ends_with("_count")
            && family_of(&s.name, &out.types).is_some_and(|f| out.types[f] == "histogram")
        {
            check_histogram(&out, s);
        }
    }
    out
}

/// The buckets of the histogram series `count` counts are cumulative and
/// end with `+Inf` equal to the count.
fn check_histogram(e: &Exposition, count: &Sample) {
    let base = count.name.strip_suffix("_count").unwrap();
    let bucket_name = format!("{base}_bucket");
    let mut buckets: Vec<(f64, f64)> = e
        .samples
        .iter()
        .filter(|s| s.name == bucket_name)
        .filter(|s| {
            let mut l = s.labels.clone();
            l.remove("le");
            l == count.labels
        })
        .map(|s| (parse_value(&s.labels["le"]).unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        !buckets.is_empty(),
        "{base}: no buckets for {:?}",
        count.labels
    );
    for w in buckets.windows(2) {
        assert!(w[0].1 <= w[1].1, "{base}: buckets not cumulative");
    }
    let last = buckets.last().unwrap();
    assert!(last.0.is_infinite(), "{base}: no +Inf bucket");
    assert_eq!(last.1, count.value, "{base}: +Inf bucket != count");
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

async fn scrape(base: &str) -> (String, Exposition) {
    let r = send("GET", &format!("{base}/metrics"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.headers["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text();
    let parsed = parse(&text);
    (text, parsed)
}

const DETECT: &str = "/nhn-face-reco/v1.0/appkeys/{app_key}/detect";
const GROUP: &str = "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}";

#[test]
fn the_parser_refuses_malformed_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let e = parse(good);
    assert_eq!(e.sum("a_total", &[("x", "1")]), 3.0);
    for bad in [
        "a_total 1\n",                                                       // no TYPE
        "# TYPE a counter\na{x=1} 1\n",                                      // unquoted label
        "# TYPE a counter\na 1 2 3\n",                                       // trailing text
        "# TYPE a counter\na one\n",                                         // not a number
        "# TYPE a counter\n# TYPE a gauge\na 1\n",                           // TYPE twice
        "# TYPE a counter\n# TYPE b counter\na 1\nb 1\na 2\n",               // not contiguous
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", // +Inf != count
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted: {bad:?}"
        );
    }
}

#[test]
fn metrics_parse_and_move_with_requests() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        assert_eq!(s.server.as_ref().unwrap().metrics_addr(), None);
        let (_, before) = scrape(&s.base).await;

        let group = "ops-metrics-group";
        s.create_group(group).await;
        let v = s
            .post(
                "/detect",
                json!({ "image": image_bytes(&asset("t1.jpg")), "spoofing": true }),
            )
            .await;
        assert_code(&v, 0);
        let v = s
            .post(
                &format!("/groups/{group}"),
                json!({ "image": image_bytes(&asset("t1.jpg")), "limit": 2 }),
            )
            .await;
        assert_code(&v, 0);
        // A missing group: a store error of kind not_found.
        let r = send(
            "GET",
            &s.reco("/groups/ops-missing-group"),
            &[("x-nhn-apikey", FACE_KEY)],
            None,
        )
        .await;
        assert_error(&r.json(), -40030, "NotFoundGroupError");
        // A wrong key: counted under its resultCode.
        let r = send(
            "GET",
            &s.reco(&format!("/groups/{group}")),
            &[("x-nhn-apikey", "nope")],
            None,
        )
        .await;
        assert_error(&r.json(), -41000, "UnauthorizedAppKey");
        // Argos answers with HTTP statuses.
        let r = send(
            "POST",
            &format!("{}/modules/liveness", s.base),
            &[],
            Some(b"{}".to_vec()),
        )
        .await;
        assert_eq!(r.status, 401);

        let (text, after) = scrape(&s.base).await;
        let moved = |name: &str, labels: &[(&str, &str)]| {
            after.sum(name, labels) - before.sum(name, labels)
        };
        let reco = [("surface", "nhn_reco")];
        assert!(
            moved(
                "facegate_http_requests_total",
                &[
                    reco[0],
                    ("route", DETECT),
                    ("method", "POST"),
                    ("code", "0")
                ]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            moved(
                "facegate_http_requests_total",
                &[
                    reco[0],
                    ("route", GROUP),
                    ("method", "GET"),
                    ("code", "-41000")
                ]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            moved(
                "facegate_http_requests_total",
                &[
                    reco[0],
                    ("route", GROUP),
                    ("method", "GET"),
                    ("code", "-40030")
                ]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            moved(
                "facegate_http_requests_total",
                &[("surface", "argos"), ("code", "401")]
            ) >= 1.0,
            "{text}"
        );
        assert_eq!(
            after.types["facegate_http_request_duration_seconds"],
            "histogram"
        );
        assert!(
            moved(
                "facegate_http_request_duration_seconds_count",
                &[("route", DETECT), ("method", "POST")]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            moved(
                "facegate_http_request_duration_seconds_sum",
                &[("route", DETECT), ("method", "POST")]
            ) > 0.0,
            "{text}"
        );
        for (name, labels) in [
            ("facegate_image_decode_duration_seconds_count", &[][..]),
            ("facegate_decode_admission_wait_seconds_count", &[][..]),
            (
                "facegate_decode_admissions_total",
                &[("outcome", "admitted")][..],
            ),
            (
                "facegate_analysis_duration_seconds_count",
                &[("operation", "analyze")][..],
            ),
            (
                "facegate_store_operation_duration_seconds_count",
                &[("operation", "create_group")][..],
            ),
            (
                "facegate_store_operation_duration_seconds_count",
                &[("operation", "add_faces")][..],
            ),
            (
                "facegate_store_errors_total",
                &[("operation", "get_group"), ("kind", "not_found")][..],
            ),
        ] {
            assert!(moved(name, labels) >= 1.0, "{name} {labels:?}: {text}");
        }
        // Every vision stage: detect with spoofing, register embeds.
        for stage in ["detect", "landmarks", "embed", "liveness", "mask", "pose"] {
            let count = "facegate_analysis_stage_duration_seconds_count";
            assert!(moved(count, &[("stage", stage)]) >= 1.0, "{stage}: {text}");
        }
        // Gauges sampled at scrape time.
        assert_eq!(after.sum("facegate_ready", &[]), 1.0);
        assert!(after.sum("facegate_groups", &[]) >= 1.0);
        assert!(after.sum("facegate_faces", &[]) >= 2.0);
        assert!(after.sum("facegate_tenants", &[]) >= 2.0);
        assert!(after.sum("facegate_decode_memory_budget_bytes", &[]) > 0.0);
        assert!(after.has("facegate_decode_memory_in_use_bytes"));
        assert!(after.has("facegate_decoded_images"));
        assert!(after.has("facegate_decode_admission_waiting"));
        // The scrape itself is in flight.
        assert!(after.sum("facegate_http_requests_in_flight", &[]) >= 1.0);
        assert!(after.samples.iter().any(|s| s.name == "facegate_model_info"
            && s.labels.get("model").is_some_and(|m| !m.is_empty())
            && s.labels.get("runtime").is_some_and(|r| !r.is_empty())));
        // Cross-request batching counters, wherever the runtime batches
        // (ONNX Runtime; tract never does).
        let batching_runtime = after.samples.iter().any(|s| {
            s.name == "facegate_model_info" && s.labels.get("runtime").is_some_and(|r| r != "tract")
        });
        assert_eq!(
            after.has("facegate_batch_runs_total"),
            batching_runtime,
            "{text}"
        );
        if batching_runtime {
            let runs = after.sum("facegate_batch_runs_total", &[]);
            assert!(runs >= 1.0, "{text}");
            assert!(after.sum("facegate_batch_faces_total", &[]) >= runs);
            assert!(after.sum("facegate_batch_largest", &[]) >= 1.0);
        }
        if on_postgres() {
            assert_eq!(after.sum("facegate_store_listener_connected", &[]), 1.0);
        }
        // Bounded labels only: no appKey, group id or face id anywhere.
        let face_ids = s.get(&format!("/groups/{group}/faces?limit=10")).await["data"]["faces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["faceId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert!(!face_ids.is_empty());
        for secret in [APP, FACE_KEY, group, "ops-missing-group"]
            .into_iter()
            .chain(face_ids.iter().map(String::as_str))
        {
            assert!(!text.contains(secret), "{secret} in /metrics");
        }
        s.stop().await;
    });
}

#[test]
fn metrics_listen_serves_metrics_on_its_own_listener_only() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path(), &Setup::default());
        config.metrics_listen = Some("127.0.0.1:0".into());
        let db = on_postgres().then(PgDatabase::create);
        if let Some(db) = &db {
            config.database_url = Some(db.url.clone());
        }
        let options = StartOptions {
            analyzer: Some(engine()),
            ..StartOptions::default()
        };
        let mut s = TestServer::start_with(config, options, db).await;
        let metrics = s
            .server
            .as_ref()
            .unwrap()
            .metrics_addr()
            .expect("a metrics listener");
        assert_ne!(metrics.to_string(), s.base.trim_start_matches("http://"));
        let metrics_base = format!("http://{metrics}");

        let r = send("GET", &format!("{}/metrics", s.base), &[], None).await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(!r.text().contains("facegate_"), "{}", r.text());
        let r = send("GET", &format!("{}/healthz", s.base), &[], None).await;
        assert_eq!(r.status, 200);

        let v = s.get("/groups?limit=5").await;
        assert_code(&v, 0);
        let (text, e) = scrape(&metrics_base).await;
        // The public listener's requests, its 404 on /metrics included.
        assert!(
            e.sum(
                "facegate_http_requests_total",
                &[
                    ("route", "/nhn-face-reco/v1.0/appkeys/{app_key}/groups"),
                    ("code", "0")
                ]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            e.sum(
                "facegate_http_requests_total",
                &[
                    ("surface", "metrics"),
                    ("route", "(no route)"),
                    ("code", "404")
                ]
            ) >= 1.0,
            "{text}"
        );
        assert_eq!(e.sum("facegate_ready", &[]), 1.0);
        // Nothing but /metrics there.
        for path in ["/healthz", "/nhn-face-reco/v1.0/appkeys/app-a/groups"] {
            let r = send("GET", &format!("{metrics_base}{path}"), &[], None).await;
            assert_eq!(r.status, 404, "{path}");
        }
        s.stop().await;
        // Both listeners are closed after shutdown.
        assert!(
            try_send("GET", &format!("{metrics_base}/metrics"), &[], None)
                .await
                .is_err()
        );
    });
}
