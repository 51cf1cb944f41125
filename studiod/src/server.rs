//! The two listeners: the Unix socket (mode 0600 unless configured, callers identified by
//! their peer credentials) and the loopback HTTP port (guarded against DNS
//! rebinding and cross-site requests).

use crate::daemon::Daemon;
use anyhow::{bail, Context};
use axum::extract::connect_info::Connected;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};

/// Peer on the other end of a connection.
#[derive(Debug, Clone)]
pub enum Peer {
    Unix {
        uid: u32,
        gid: u32,
    },
    Tcp(SocketAddr),
    /// A client of the HTTP port that sent the dashboard token, which only
    /// the daemon's own user (or root) can read: it acts as that user.
    TcpWithToken(SocketAddr),
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(credentials) => Peer::Unix {
                uid: credentials.uid(),
                gid: credentials.gid(),
            },
            // Without credentials the caller matches no user.
            Err(_) => Peer::Unix {
                uid: u32::MAX - 1,
                gid: u32::MAX - 1,
            },
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer::Tcp(*stream.remote_addr())
    }
}

/// Binds the Unix socket, replacing a stale socket file but never one on
/// which a live daemon accepts connections.
pub fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another studiod listens on {}: stop it with `studio daemon stop` first",
                path.display()
            );
        }
        tracing::warn!(socket = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Binds the HTTP port. A busy port or an invalid address is returned as
/// `Err(reason)`: the daemon goes on with the Unix socket alone and reports
/// the reason in `GET /api/v1/daemon`.
pub async fn bind_tcp(setting: &str) -> Result<Option<TcpListener>, String> {
    if setting == "off" {
        return Ok(None);
    }
    let address: SocketAddr = setting.parse().map_err(|error| {
        format!("invalid HTTP address {setting:?} ({error}): set server.http in the config or STUDIOML_HTTP to an address such as 127.0.0.1:5000, or off")
    })?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the HTTP API listens on a non-loopback address: other hosts can read experiments");
    }
    TcpListener::bind(address).await.map(Some).map_err(|error| {
        format!("cannot listen on {address}: {error}; set server.http in the config or STUDIOML_HTTP to another port, then restart studiod")
    })
}

/// Serves until SIGTERM, SIGINT or a shutdown request.
pub async fn serve(daemon: Arc<Daemon>, unix: UnixListener, tcp: Option<TcpListener>) {
    let router = crate::api::router(daemon.clone());
    let http_router = router
        .clone()
        .merge(crate::web::router())
        .layer(axum::middleware::from_fn(guard_loopback));

    let unix_server = axum::serve(unix, router.into_make_service_with_connect_info::<Peer>());
    let tcp_server = async move {
        match tcp {
            Some(listener) => {
                axum::serve(
                    listener,
                    http_router.into_make_service_with_connect_info::<Peer>(),
                )
                .await
            }
            None => std::future::pending().await,
        }
    };
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot handle SIGTERM");
                return;
            }
        };
    tokio::select! {
        result = unix_server => if let Err(error) = result { tracing::error!(%error, "the Unix socket server failed") },
        result = tcp_server => if let Err(error) = result { tracing::error!(%error, "the HTTP server failed") },
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = daemon.shutdown.notified() => {}
    }
    crate::tensorboard_ui::stop_all();
}

/// Rejects requests whose `Host` is not a loopback name (DNS rebinding),
/// state-changing requests sent by a page of another origin, and
/// state-changing requests that a cross-site HTML form could send.
async fn guard_loopback(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !is_loopback_authority(host) {
        return reject(format!(
            "Host {host:?} is not a loopback name: open the dashboard at http://127.0.0.1 or http://localhost"
        ));
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        if let Some(origin) = origin {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            if authority != host {
                return reject(format!(
                    "cross-origin {} from {origin:?} rejected: only pages served by studiod may change experiments",
                    request.method()
                ));
            }
        }
        let fetch_site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok());
        if fetch_site == Some("cross-site") {
            return reject(format!("cross-site {} rejected", request.method()));
        }
        // A browser sends neither a custom header nor a JSON content type
        // across origins without a CORS preflight, which studiod never
        // allows, so this stops HTML form posts that carry no Origin.
        if !request.headers().contains_key(REQUESTED_WITH) && !has_json_body(&request) {
            return reject(format!(
                "{} without an {REQUESTED_WITH} header or a JSON body rejected: send `{REQUESTED_WITH}: studio` or `Content-Type: application/json`",
                request.method()
            ));
        }
    }
    let mut request = request;
    match bearer_token(&request) {
        None => {}
        Some(token) if is_dashboard_token(token) => {
            let address =
                request
                    .extensions()
                    .get::<ConnectInfo<Peer>>()
                    .and_then(|ConnectInfo(peer)| match peer {
                        Peer::Tcp(address) | Peer::TcpWithToken(address) => Some(*address),
                        Peer::Unix { .. } => None,
                    });
            if let Some(address) = address {
                request
                    .extensions_mut()
                    .insert(ConnectInfo(Peer::TcpWithToken(address)));
            }
        }
        Some(_) => {
            tracing::warn!("request with an invalid dashboard token rejected");
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(studio_core::api::ErrorBody {
                    error: "invalid dashboard token (studiod was restarted?): open the address that `studio ui` prints".into(),
                }),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The secret that lets the dashboard act as the daemon's user on the HTTP
/// port. It is random per daemon start, kept in memory only, and given
/// only to Unix-socket callers who are the daemon's user or root (`studio
/// ui` prints it in the dashboard's address).
pub fn dashboard_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Compares in time independent of where the strings differ, so the token
/// cannot be guessed byte by byte from response times.
fn is_dashboard_token(candidate: &str) -> bool {
    let expected = dashboard_token().as_bytes();
    let candidate = candidate.as_bytes();
    candidate.len() == expected.len()
        && candidate
            .iter()
            .zip(expected)
            .fold(0u8, |difference, (left, right)| difference | (left ^ right))
            == 0
}

fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Header that the dashboard sends with every state-changing request.
pub const REQUESTED_WITH: &str = "x-requested-with";

fn has_json_body(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

fn reject(message: String) -> Response {
    tracing::warn!(%message, "request rejected");
    (
        StatusCode::FORBIDDEN,
        axum::Json(studio_core::api::ErrorBody { error: message }),
    )
        .into_response()
}

/// True for `localhost`, `127.x.x.x` and `[::1]`, with or without a port.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_authorities() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback_authority(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:5000",
            "10.0.0.1:5000",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!is_loopback_authority(host), "{host}");
        }
    }
}
