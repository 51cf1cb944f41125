//! The dashboard: static files from `web/`, embedded at build time so that
//! studiod serves them with no network access and `cargo install` needs no
//! JavaScript tooling. They use only the HTTP API.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Routes of the dashboard, served on the HTTP port only.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| asset(INDEX, "text/html; charset=utf-8")))
        .route(
            "/app.js",
            get(|| asset(APP, "text/javascript; charset=utf-8")),
        )
        .route(
            "/style.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
}

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

async fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change with the binary; a restarted studiod must not
            // be shown with an older cached app.js.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
