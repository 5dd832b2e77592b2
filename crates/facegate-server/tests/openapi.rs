//! End-to-end: `/openapi.json` describes exactly the routes the server
//! answers, its references resolve, its fields carry the contract's ranges
//! and defaults, and `/docs` renders it from assets the binary serves
//! itself. (scripts/check-openapi.sh validates the same document against
//! the OpenAPI 3.1 schema with the reference validator.)

use facegate_test_support::server as common;

use std::collections::BTreeSet;

use common::*;
use facegate_server::PublicRoutes;
use serde_json::Value;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The documented operations: (METHOD, path template).
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete URL path for a template.
fn concrete(template: &str) -> String {
    template
        .replace("{app_key}", APP)
        .replace("{group_id}", "g1")
        .replace("{face_id}", "f1")
}

/// Whether a response is the router's fallback (no such route or method),
/// in whichever format the path's surface uses, for a request that carried
/// no credentials (so a handler would have refused it as unauthorised).
fn is_fallback(path: &str, r: &Resp) -> bool {
    if path.starts_with("/nhn-face-reco/") || path.starts_with("/v1.0/") {
        let v = r.json();
        v["header"]["resultCode"] == -40000 && v["header"]["detail"] == "no such route"
    } else if path.starts_with("/modules/") {
        r.status == 400 && r.json()["errorCode"] == 1017
    } else {
        r.status == 404 && r.json()["message"] == "Not Found"
    }
}

fn resolve_ref<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "$ref {reference} does not resolve");
    schema
}

/// Every `$ref` anywhere in `v` resolves.
fn check_refs(doc: &Value, v: &Value) -> usize {
    match v {
        Value::Object(map) => {
            let own = match map.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    resolve_ref(doc, r);
                    1
                }
                None => 0,
            };
            own + map.values().map(|x| check_refs(doc, x)).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(|x| check_refs(doc, x)).sum(),
        _ => 0,
    }
}

/// The (possibly referenced) schema of a request body's JSON, with its
/// `allOf` parts' properties merged.
fn properties(doc: &Value, schema: &Value) -> serde_json::Map<String, Value> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => resolve_ref(doc, r),
        None => schema,
    };
    let mut props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        props.extend(properties(doc, part));
    }
    props
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

fn parameter<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("parameter {name} missing: {op}"))
}

#[test]
fn the_document_covers_every_route_and_nothing_else() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = TestServer::start(dir.path(), Setup::default()).await;
        let r = send("GET", &format!("{}/openapi.json", s.base), &[], None).await;
        assert_eq!(r.status, 200);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let doc = r.json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "facegate");

        let ops = operations(&doc);
        // The three surfaces (11 NHN Face Recognition Plus operations, one
        // each for NHN Face Liveness and Argos), health, metrics, docs.
        let expected: BTreeSet<(String, String)> = [
            ("POST", "/nhn-face-reco/v1.0/appkeys/{app_key}/groups"),
            ("GET", "/nhn-face-reco/v1.0/appkeys/{app_key}/groups"),
            (
                "GET",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}",
            ),
            (
                "DELETE",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}",
            ),
            (
                "POST",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}",
            ),
            (
                "GET",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}/faces",
            ),
            (
                "GET",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}/faces/{face_id}",
            ),
            (
                "DELETE",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}/faces/{face_id}",
            ),
            (
                "POST",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}/search",
            ),
            ("POST", "/nhn-face-reco/v1.0/appkeys/{app_key}/detect"),
            ("POST", "/nhn-face-reco/v1.0/appkeys/{app_key}/compare"),
            (
                "POST",
                "/nhn-face-reco/v1.0/appkeys/{app_key}/verify/groups/{group_id}/faces/{face_id}",
            ),
            ("POST", "/nhn-face-reco/v1.0/appkeys/{app_key}/spoofing"),
            ("POST", "/v1.0/appkeys/{app_key}/spoofing"),
            ("POST", "/modules/liveness"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/docs/docs.js"),
            ("GET", "/docs/docs.css"),
            ("GET", "/console"),
            ("GET", "/console/"),
            ("GET", "/console/console.js"),
            ("GET", "/console/console.css"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
        assert_eq!(ops, expected);

        // Every method of every documented path, without credentials: a
        // documented one reaches its handler (which refuses or answers),
        // any other gets the fallback.
        let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
        for template in paths {
            let url = format!("{}{}", s.base, concrete(template));
            for method in METHODS {
                let r = send(method, &url, &[], Some(b"{}".to_vec())).await;
                let documented = ops.contains(&(method.to_string(), template.clone()));
                assert_eq!(
                    !is_fallback(template, &r),
                    documented,
                    "{method} {template}: documented={documented}, answered {} {}",
                    r.status,
                    r.text()
                );
            }
        }

        // Structure beyond the schema: unique operation ids, a tag each,
        // credentials on every surface operation, the tenant parameter
        // wherever the path has one, and every reference resolving.
        let mut ids = BTreeSet::new();
        for (method, path) in &ops {
            let op = operation(&doc, &method.to_ascii_lowercase(), path);
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            let tag = op["tags"][0].as_str().expect("tag");
            let scheme = op["security"][0]
                .as_object()
                .map(|m| m.keys().next().unwrap().clone());
            match tag {
                "Operations" => assert_eq!(scheme, None, "{path}"),
                _ => {
                    let scheme = scheme.unwrap_or_else(|| panic!("{path} has no security"));
                    assert_eq!(
                        doc["components"]["securitySchemes"][&scheme]["in"],
                        "header"
                    );
                }
            }
            for name in ["app_key", "group_id", "face_id"] {
                if path.contains(&format!("{{{name}}}")) {
                    let p = parameter(op, name);
                    assert_eq!((&p["in"], &p["required"]), (&"path".into(), &true.into()));
                }
            }
        }
        assert!(check_refs(&doc, &doc) > 20);

        // The contract's ranges and defaults are in the document.
        let reco = "/nhn-face-reco/v1.0/appkeys/{app_key}";
        let list = operation(&doc, "get", &format!("{reco}/groups"));
        let limit = &parameter(list, "limit")["schema"];
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&1.into(), &200.into())
        );
        let search = operation(
            &doc,
            "get",
            &format!("{reco}/groups/{{group_id}}/faces/{{face_id}}"),
        );
        assert_eq!(parameter(search, "limit")["schema"]["maximum"], 4096);
        let threshold = parameter(search, "threshold");
        assert_eq!(threshold["required"], true);
        assert_eq!(threshold["schema"]["maximum"], 100);
        let register = operation(&doc, "post", &format!("{reco}/groups/{{group_id}}"));
        let body = &register["requestBody"]["content"]["application/json"]["schema"];
        let props = properties(&doc, body);
        assert_eq!(props["limit"]["maximum"], 20);
        assert_eq!(props["spoofing"]["default"], false);
        assert_eq!(props["orientation"]["default"], true);
        let live = operation(&doc, "post", "/v1.0/appkeys/{app_key}/spoofing");
        assert!(live["requestBody"]["content"]["multipart/form-data"].is_object());
        let argos = operation(&doc, "post", "/modules/liveness");
        for status in ["200", "400", "401", "500", "503"] {
            assert!(argos["responses"][status].is_object(), "Argos {status}");
        }
        let tags = doc["tags"].as_array().unwrap();
        let reco_tag = tags
            .iter()
            .find(|t| t["name"] == "NHN Face Recognition Plus")
            .unwrap();
        for code in [
            "| -40010 | InvalidGroupID |",
            "| -41000 | UnauthorizedAppKey |",
        ] {
            assert!(
                reco_tag["description"].as_str().unwrap().contains(code),
                "{code}"
            );
        }
    });
}

#[test]
fn the_docs_page_and_the_console_are_self_contained() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = TestServer::start(dir.path(), Setup::default()).await;
        let pages = [
            ("/docs", ["/docs/docs.js", "/docs/docs.css"]),
            ("/console/", ["/console/console.js", "/console/console.css"]),
        ];
        for (path, assets) in pages {
            let page = send("GET", &format!("{}{path}", s.base), &[], None).await;
            assert_eq!(page.status, 200);
            assert!(page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            let csp = page.headers["content-security-policy"].to_str().unwrap();
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(directive), "{path}: {directive} in {csp}");
            }
            let html = page.text();
            for (asset, content_type) in assets.into_iter().zip(["text/javascript", "text/css"]) {
                assert!(html.contains(&format!("\"{asset}\"")), "{asset} linked");
                let r = send("GET", &format!("{}{asset}", s.base), &[], None).await;
                assert_eq!(r.status, 200);
                assert!(r.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with(content_type));
                assert_eq!(r.headers["x-content-type-options"], "nosniff");
                // Offline: nothing is fetched from anywhere but this server.
                let text = r.text();
                for other_origin in ["http:", "https:", "url(", "@import"] {
                    assert!(!text.contains(other_origin), "{asset} loads from elsewhere");
                }
                assert!(!text.contains("innerHTML"), "{asset} writes HTML");
            }
            assert!(
                !html.contains("<script>") && !html.contains("style="),
                "{path}: inline code"
            );
            assert!(!html.contains("http://") && !html.contains("https://"));
        }
    });
}

#[test]
fn optional_routes_left_out_of_the_router_are_left_out_of_the_document() {
    let document = |metrics, console| {
        let routes = PublicRoutes { metrics, console };
        serde_json::to_value(facegate_server::openapi_document(routes)).unwrap()
    };
    let all = document(true, true);
    let no_metrics = document(false, true);
    let no_console = document(true, false);
    assert!(all["paths"]["/metrics"]["get"].is_object());
    assert!(no_metrics["paths"].get("/metrics").is_none());
    assert_eq!(operations(&all).len(), operations(&no_metrics).len() + 1);
    assert!(all["paths"]["/console/"]["get"].is_object());
    assert!(no_console["paths"].get("/console/").is_none());
    assert_eq!(operations(&all).len(), operations(&no_console).len() + 4);
}
