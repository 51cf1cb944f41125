//! `GET /api/v1/openapi.json`: the API's OpenAPI document, kept in
//! `web/openapi.json` and embedded at build time.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of every route under `/api/v1`.
pub const DOCUMENT: &str = include_str!("../../../web/openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
