//! HTTP/1.1 over the daemon's Unix socket, and starting the daemon when
//! nothing listens there.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use studio_core::api::ErrorBody;
use studio_core::paths::StudioPaths;
use tokio::net::UnixStream;

/// How long the client waits for a daemon it started to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Error response of the daemon, with its message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Clone)]
pub struct Client {
    pub paths: StudioPaths,
    /// Config file passed to a daemon that this client starts.
    pub config: Option<PathBuf>,
    /// Set once the config file was checked against the running daemon.
    config_checked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Client {
    pub fn new(paths: StudioPaths, config: Option<PathBuf>) -> Self {
        Self {
            paths,
            config,
            config_checked: Default::default(),
        }
    }

    /// Connects to the daemon, starting it first when nothing listens.
    async fn connect(&self) -> anyhow::Result<UnixStream> {
        match UnixStream::connect(&self.paths.socket).await {
            Ok(stream) => {
                self.warn_if_config_changed();
                return Ok(stream);
            }
            Err(error) if is_absent(&error) => {}
            Err(error) => {
                return Err(anyhow!(
                    "cannot connect to studiod at {}: {error}",
                    self.paths.socket.display()
                ))
            }
        }
        self.start_daemon().await?;
        UnixStream::connect(&self.paths.socket)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to studiod at {}",
                    self.paths.socket.display()
                )
            })
    }

    /// Warns, once per client, when the config file changed after the
    /// running daemon created its socket: studiod reads the config only
    /// when it starts, so storage and server changes wait for a restart.
    fn warn_if_config_changed(&self) {
        if self
            .config_checked
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let config = self
            .config
            .clone()
            .unwrap_or_else(|| self.paths.config_file());
        let modified =
            |path: &std::path::Path| std::fs::metadata(path).and_then(|meta| meta.modified());
        if let (Ok(changed), Ok(started)) = (modified(&config), modified(&self.paths.socket)) {
            if changed > started {
                eprintln!(
                    "studio: warning: {} changed after studiod started, which reads it only at start; run `studio daemon stop` to apply it",
                    config.display()
                );
            }
        }
    }

    /// Connects only if a daemon is running; never starts one.
    pub async fn connect_existing(&self) -> Option<UnixStream> {
        UnixStream::connect(&self.paths.socket).await.ok()
    }

    /// Starts `<this binary> daemon run` in the background, with its log in
    /// `~/.studioml/logs/studiod.log`, and waits for its socket.
    pub async fn start_daemon(&self) -> anyhow::Result<()> {
        // A daemon whose config does not load would exit at once; the
        // config's error is clearer here than in the daemon's log.
        studio_core::config::Config::load(
            self.config.as_deref(),
            &self.paths.config_file(),
            |name| std::env::var(name).ok(),
        )?;
        let log_path = self.paths.daemon_log();
        if let Some(directory) = log_path.parent() {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("cannot create {}", directory.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let executable = std::env::current_exe().context("cannot find the studio executable")?;
        let mut command = std::process::Command::new(&executable);
        command.arg("daemon").arg("run");
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it keeps the daemon out of the
        // terminal's process group so Ctrl-C in this shell does not reach it.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} daemon run", executable.display()))?;
        eprintln!(
            "studio: starting studiod (pid {}, log {})",
            child.id(),
            log_path.display()
        );

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut exited_at = None;
        loop {
            if UnixStream::connect(&self.paths.socket).await.is_ok() {
                // Reap the daemon's process entry if it exits later.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if exited_at.is_none() {
                if let Some(status) = child.try_wait().ok().flatten() {
                    // Another client may have started a daemon at the same
                    // time; give its socket a moment before reporting a
                    // failure.
                    exited_at = Some((now, status));
                }
            }
            let gave_up =
                exited_at.is_some_and(|(exited, _)| now - exited > Duration::from_secs(2));
            if gave_up {
                let tail = last_lines(&log_path, 5);
                let status = exited_at.map(|(_, status)| status).unwrap_or_default();
                bail!(
                    "studiod could not start ({status}); last lines of {}:\n{tail}",
                    log_path.display()
                );
            }
            if now >= deadline {
                let tail = last_lines(&log_path, 5);
                bail!(
                    "studiod did not open {} within {}s; last lines of {}:\n{tail}",
                    self.paths.socket.display(),
                    (now - (deadline - START_TIMEOUT)).as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a request and returns the response with its body still to be
    /// read.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Response<Incoming>> {
        // A request that may be repeated (all but POST) is sent again when
        // the connection breaks, as it does when studiod dies or restarts
        // between the connect and the answer.
        let attempts = if method == Method::POST { 1 } else { 5 };
        let mut attempt = 1;
        loop {
            let stream = self.connect().await?;
            match send_on(stream, method.clone(), path, body.clone()).await {
                Ok(response) => return Ok(response),
                Err(_) if attempt < attempts => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends a request and decodes a JSON answer, turning an error answer
    /// into an [`ApiError`].
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &bytes).into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("studiod sent an unreadable answer to {path}"))
    }

    /// Like [`Client::json`] for requests whose answer has no body.
    pub async fn call(&self, method: Method, path: &str) -> anyhow::Result<()> {
        let response = self.send(method, path, None).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &bytes).into());
        }
        Ok(())
    }
}

pub async fn send_on(
    stream: UnixStream,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Response<Incoming>> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with studiod failed")?;
    tokio::spawn(connection);
    let has_body = body.is_some();
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "studiod")
        .header("x-studio-version", studio_core::VERSION);
    if has_body {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    sender
        .send_request(request)
        .await
        .context("studiod closed the connection")
}

pub fn api_error(status: StatusCode, bytes: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|body| body.error)
        .unwrap_or_else(|_| {
            format!(
                "studiod answered {status}: {}",
                String::from_utf8_lossy(bytes)
            )
        });
    ApiError { status, message }
}

fn is_absent(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

fn last_lines(path: &std::path::Path, count: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Percent-encodes a path segment such as an experiment key.
pub fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
