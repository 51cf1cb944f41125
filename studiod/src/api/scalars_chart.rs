//! `GET /api/v1/experiments/{key}/scalars.svg?tag=TAG`: a line chart of one
//! TensorBoard scalar by step, drawn as SVG by plotters so the dashboard
//! needs no charting code of its own. The values come from the experiment's
//! `/scalars` route, which reads the TensorBoard files of its `tb`
//! artifact. A studiod without that route returns 404.

use super::ApiError;
use crate::daemon::Daemon;
use crate::server::Peer;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// Size of the chart in pixels.
const SIZE: (u32, u32) = (720, 320);

#[derive(Debug, Deserialize)]
pub struct ChartQuery {
    tag: String,
}

/// One scalar value: step, wall time in seconds, value.
type Point = (f64, f64, f64);

pub async fn chart(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(key): Path<String>,
    query: Result<Query<ChartQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "invalid query: {}; ask for one scalar with ?tag=NAME",
            rejection.body_text()
        ))
    })?;
    let scalars = read_scalars(daemon, peer, &key).await?;
    let Some(points) = scalars.get(&query.tag) else {
        let known: Vec<&str> = scalars.keys().map(String::as_str).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "experiment {key} has no scalar {:?}; its scalars are: {}",
                query.tag,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let svg = render(&query.tag, points)
        .map_err(|error| ApiError::internal(format!("cannot draw {:?}: {error}", query.tag)))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg))
}

/// Asks this daemon's own `/scalars` route, so the chart stays independent
/// of how scalars are read.
async fn read_scalars(
    daemon: Arc<Daemon>,
    peer: Peer,
    key: &str,
) -> Result<BTreeMap<String, Vec<Point>>, ApiError> {
    let mut request = Request::get(format!("/api/v1/experiments/{key}/scalars"))
        .body(Body::empty())
        .map_err(|error| {
            ApiError::bad_request(format!("invalid experiment key {key:?}: {error}"))
        })?;
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = super::router(daemon)
        .oneshot(request)
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .map_err(|error| {
            ApiError::internal(format!("cannot read the scalars of {key}: {error}"))
        })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<studio_core::api::ErrorBody>(&body)
            .map(|body| body.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(ApiError::new(status, message));
    }
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::internal(format!("invalid scalars of {key}: {error}")))
}

/// Draws `points` as a line of value by step. Non-finite values are left
/// out; a flat or single-point series gets a range around its value.
pub fn render(tag: &str, points: &[Point]) -> Result<String, String> {
    let line: Vec<(f64, f64)> = points
        .iter()
        .filter(|(step, _, value)| step.is_finite() && value.is_finite())
        .map(|(step, _, value)| (*step, *value))
        .collect();
    let (x_range, y_range) = ranges(&line);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(tag, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|error| error.to_string())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|error| error.to_string())?;
        chart
            .draw_series(LineSeries::new(line, RGBColor(11, 98, 196).stroke_width(2)))
            .map_err(|error| error.to_string())?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(svg)
}

fn ranges(line: &[(f64, f64)]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let widen = |low: f64, high: f64| {
        if !low.is_finite() || !high.is_finite() {
            return 0.0..1.0;
        }
        if high > low {
            return low..high;
        }
        let margin = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
        (low - margin)..(high + margin)
    };
    let fold = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        })
    };
    let (step_low, step_high) = fold(&mut line.iter().map(|point| point.0));
    let (value_low, value_high) = fold(&mut line.iter().map(|point| point.1));
    (widen(step_low, step_high), widen(value_low, value_high))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when the SVG has a `<text>` element with exactly `text`;
    /// plotters puts the text on a line of its own.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>")) || svg.contains(&format!(">{text}</text>"))
    }

    #[test]
    fn chart_has_the_line_and_caption() {
        let points: Vec<Point> = (0..20)
            .map(|step| (step as f64, 0.0, 1.0 / (step as f64 + 1.0)))
            .collect();
        let svg = render("loss", &points).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(has_text(&svg, "loss"), "caption missing");
        assert!(has_text(&svg, "step"), "axis description missing");
        assert!(svg.contains("<polyline"), "line missing");
    }

    #[test]
    fn flat_and_empty_series_still_draw() {
        let flat = render("constant", &[(0.0, 0.0, 3.0), (1.0, 0.0, 3.0)]).unwrap();
        assert!(flat.contains("<polyline"));
        let empty = render("nothing", &[]).unwrap();
        assert!(has_text(&empty, "nothing"));
        let with_nan = render("nan", &[(0.0, 0.0, f64::NAN), (1.0, 0.0, 2.0)]).unwrap();
        assert!(has_text(&with_nan, "nan"));
    }
}
