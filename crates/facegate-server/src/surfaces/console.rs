//! `GET /console/`: a single-page console for people trying facegate out
//! (analyse a photo, manage groups, enrol, search, compare, verify). It is
//! only HTML, script and style compiled into the binary; it calls the same
//! public routes as any client, with the tenant keys its user types (kept
//! in the tab's `sessionStorage`), so it adds no privileged surface.
//! `console = false` in the config turns it off.

use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::embedded::{Embedded, CSS, HTML, JAVASCRIPT};
use super::openapi::OPERATIONS_TAG;
use super::state::AppState;

/// What the console may do: run its own script and style, draw images it
/// read from local files (blob:/data:), talk to this server only, be
/// framed by nobody.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn page(content_type: &'static str) -> Embedded {
    Embedded {
        content_type,
        csp: CONSOLE_CSP,
    }
}

/// The console's routes, documented like every other route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(console_redirect))
        .routes(routes!(console_page))
        .routes(routes!(console_script))
        .routes(routes!(console_style))
}

/// To `/console/`, where the page's relative state lives.
#[utoipa::path(get, path = "/console", tag = OPERATIONS_TAG, operation_id = "consoleRedirect",
    responses((status = 308, description = "Redirect to /console/")))]
async fn console_redirect() -> Response {
    let mut resp = page(HTML).respond("");
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/console/"));
    resp.into_response()
}

/// The web console.
#[utoipa::path(get, path = "/console/", tag = OPERATIONS_TAG, operation_id = "console",
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
async fn console_page() -> Response {
    page(HTML).respond(include_str!("console/index.html"))
}

/// The console's script.
#[utoipa::path(get, path = "/console/console.js", tag = OPERATIONS_TAG, operation_id = "consoleScript",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
async fn console_script() -> Response {
    page(JAVASCRIPT).respond(include_str!("console/console.js"))
}

/// The console's style sheet.
#[utoipa::path(get, path = "/console/console.css", tag = OPERATIONS_TAG, operation_id = "consoleStyle",
    responses((status = 200, description = "CSS", content_type = "text/css")))]
async fn console_style() -> Response {
    page(CSS).respond(include_str!("console/console.css"))
}
