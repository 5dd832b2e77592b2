//! `GET /openapi.json`, the OpenAPI 3.1 document of every route this server
//! answers, and `GET /docs`, a page that renders it. The document is built
//! from the handlers' `#[utoipa::path]` annotations as the router is built
//! (utoipa-axum registers a route and its documentation in one call), then
//! finished here with what annotations cannot say once: the tenant path
//! parameter, each surface's credentials and its result codes.
//!
//! The page's HTML, script and style are compiled into the binary: it
//! works offline, and its Content-Security-Policy allows nothing but this
//! server.

use std::sync::Arc;

use axum::response::Response;
use axum::Extension;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::Tag;
use utoipa::openapi::{Components, License, ObjectBuilder, OpenApi, Required, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::embedded::{Embedded, CSS, HTML, JAVASCRIPT};
use super::nhn_common::NhnCode;
use super::state::AppState;
use super::{argos, nhn_liveness, nhn_reco};

/// The OpenAPI tag of health, metrics and documentation routes.
pub const OPERATIONS_TAG: &str = "Operations";

/// The finished document, rendered once, shared by the handlers.
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    /// Renders `doc` once for every later request.
    pub fn new(doc: &OpenApi) -> Self {
        // Serialising a document of plain strings and maps cannot fail.
        let json = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".to_string());
        Document(json.into())
    }
}

/// The documentation routes, themselves documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_script))
        .routes(routes!(docs_style))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = OPERATIONS_TAG, operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json")))]
async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    page("application/json").respond(doc.0.to_string())
}

/// The API reference page, rendered from `/openapi.json` in the browser.
#[utoipa::path(get, path = "/docs", tag = OPERATIONS_TAG, operation_id = "docs",
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
async fn docs_page() -> Response {
    page(HTML).respond(include_str!("docs/index.html"))
}

/// The reference page's script.
#[utoipa::path(get, path = "/docs/docs.js", tag = OPERATIONS_TAG, operation_id = "docsScript",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
async fn docs_script() -> Response {
    page(JAVASCRIPT).respond(include_str!("docs/docs.js"))
}

/// The reference page's style sheet.
#[utoipa::path(get, path = "/docs/docs.css", tag = OPERATIONS_TAG, operation_id = "docsStyle",
    responses((status = 200, description = "CSS", content_type = "text/css")))]
async fn docs_style() -> Response {
    page(CSS).respond(include_str!("docs/docs.css"))
}

/// What the page may load: its own script, style and document, nothing
/// else, and no framing.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn page(content_type: &'static str) -> Embedded {
    Embedded {
        content_type,
        csp: DOCS_CSP,
    }
}

/// Each surface's credentials, as security schemes: (scheme, header).
const NHN_RECO_KEY: (&str, &str) = ("nhnApiKey", nhn_reco::API_KEY_HEADER);
const NHN_LIVENESS_SECRET: (&str, &str) = ("nhnSecretKey", "Authorization");
const ARGOS_KEY: (&str, &str) = ("argosApiKey", argos::API_KEY_HEADER);

/// Completes the annotated document: title and version, tag descriptions
/// with the result codes, security schemes and per-operation security, and
/// the `{app_key}` path parameter the NHN routes share.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "facegate".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Self-hosted face recognition and liveness with three vendor-compatible APIs: \
         NHN Cloud Face Recognition Plus, NHN Cloud Face Liveness and Argos Identity Face \
         Liveness. Every NHN answer is HTTP 200 with a `header` whose `resultCode` says \
         what happened (the codes are listed with each surface); Argos answers with HTTP \
         status codes."
            .into(),
    );
    doc.info.license = Some(
        License::builder()
            .name("Apache-2.0")
            .identifier(Some("Apache-2.0"))
            .build(),
    );
    doc.tags = Some(vec![
        tag(
            nhn_reco::TAG,
            "Groups of registered faces, detection, search, compare, verify and liveness, under \
             `/nhn-face-reco/v1.0/appkeys/{app_key}`; header `x-nhn-apikey`.",
            &nhn_codes(NhnCode::UnauthorizedAppKey, true),
        ),
        tag(
            nhn_liveness::TAG,
            "Liveness per face; header `Authorization` carries the tenant's secret key.",
            &nhn_codes(NhnCode::UnauthorizedAppKeyOrSecretKey, false),
        ),
        tag(
            argos::TAG,
            "A liveness score for the face of a Base64 image; header `x-api-key`. Errors are \
             HTTP 400 (errorCode 1016 no image, 1017 not analysable), 401, 500 and 503.",
            &[],
        ),
        tag(
            OPERATIONS_TAG,
            "Health, readiness, Prometheus metrics and this documentation; no credentials.",
            &[],
        ),
    ]);
    let components = doc.components.get_or_insert_with(Components::new);
    for (scheme, header) in [NHN_RECO_KEY, NHN_LIVENESS_SECRET, ARGOS_KEY] {
        components.add_security_scheme(
            scheme,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(header))),
        );
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let tenant_in_path = path.contains("{app_key}");
        for op in operations(item) {
            let scheme = match op
                .tags
                .as_deref()
                .and_then(|t| t.first())
                .map(String::as_str)
            {
                Some(nhn_reco::TAG) => Some(NHN_RECO_KEY.0),
                Some(nhn_liveness::TAG) => Some(NHN_LIVENESS_SECRET.0),
                Some(argos::TAG) => Some(ARGOS_KEY.0),
                _ => None,
            };
            if let Some(scheme) = scheme {
                op.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(
                    scheme,
                    [],
                )]);
            }
            if tenant_in_path {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .insert(0, app_key_parameter().into());
            }
        }
    }
    doc
}

/// Every operation of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn app_key_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("app_key")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The tenant's appKey, as configured."))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// The codes an NHN surface answers: `unauthorized` is its spelling of a
/// failed authentication; only Face Recognition Plus has groups.
fn nhn_codes(unauthorized: NhnCode, has_groups: bool) -> Vec<NhnCode> {
    NhnCode::ALL
        .into_iter()
        .filter(|c| match c {
            NhnCode::UnauthorizedAppKey | NhnCode::UnauthorizedAppKeyOrSecretKey => {
                *c == unauthorized
            }
            NhnCode::InvalidGroupId
            | NhnCode::DuplicatedGroupId
            | NhnCode::NotFoundGroup
            | NhnCode::InvalidToken
            | NhnCode::NotFoundFaceId
            | NhnCode::QuotaExceeded
            | NhnCode::QuotaExceededPartial => has_groups,
            _ => true,
        })
        .collect()
}

/// A tag whose description ends with a table of `codes`, when there are any.
fn tag(name: &str, description: &str, codes: &[NhnCode]) -> Tag {
    let mut text = description.to_string();
    if !codes.is_empty() {
        text.push_str("\n\n| resultCode | resultMessage |\n| --- | --- |\n");
        for code in codes {
            text.push_str(&format!("| {} | {} |\n", code.code(), code.name()));
        }
    }
    Tag::builder().name(name).description(Some(text)).build()
}
