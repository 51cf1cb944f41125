//! The dashboard's static pages, embedded at build time.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// Routes of the dashboard, served on the HTTP port only.
pub fn router() -> Router {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}
