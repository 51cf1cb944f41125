//! The HTTP API on the loopback port: every route, cursor pagination, the
//! output as bytes and as Server-Sent Events, the event stream, the
//! OpenAPI document, TensorBoard, and the guard against DNS rebinding and
//! cross-site requests.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use studio_tests::{repository, wait_until, Studio, TIMEOUT};

/// Header the dashboard sends on state-changing requests.
const REQUESTED_WITH: (&str, &str) = ("X-Requested-With", "test");

const LOOP: &str = "import time\nfor step in range(100000):\n    print(f'step {step}', flush=True)\n    time.sleep(0.1)\n";

/// An HTTP answer with its headers (names lowercased) and decoded body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("invalid JSON ({error}): {}", self.body))
    }

    /// The message of an error answer.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.body))
            .to_string()
    }
}

/// Sends one HTTP/1.1 request and reads the whole answer, decoding a
/// chunked body. `Host` defaults to the address.
fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connect to studiod");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        text.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("end of the headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|window| window == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

/// Headers of a state-changing request from the dashboard.
fn owner(token: &str) -> [(&'static str, String); 2] {
    [
        (REQUESTED_WITH.0, REQUESTED_WITH.1.to_string()),
        ("Authorization", format!("Bearer {token}")),
    ]
}

/// Sends a state-changing request as the dashboard does.
fn change(
    address: &str,
    token: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Answer {
    let headers = owner(token);
    let mut all: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    all.extend_from_slice(extra);
    request(address, method, path, &all, body)
}

fn get(address: &str, path: &str) -> Answer {
    request(address, "GET", path, &[], "")
}

/// Reads from a streaming answer until `done(text so far)` holds; fails
/// after the global timeout.
fn read_stream_until(stream: &mut TcpStream, what: &str, done: impl Fn(&str) -> bool) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if done(&text) {
            return text;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out waiting for {what}; received:\n{text}"
        );
        match stream.read(&mut buffer) {
            Ok(0) => {
                let text = String::from_utf8_lossy(&received).into_owned();
                assert!(
                    done(&text),
                    "stream closed before {what}; received:\n{text}"
                );
                return text;
            }
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("reading the stream failed: {error}"),
        }
    }
}

fn open_stream(address: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    stream
}

/// Runs `hello.py` to the end `count` times in `project` and returns the
/// keys, oldest first.
fn run_finished(studio: &Studio, project: &str, count: usize) -> Vec<String> {
    studio.write("hello.py", "print('hello from Studio')\n");
    (0..count)
        .map(|index| {
            let key = format!("{project}-{index}");
            studio.ok(&[
                "run",
                "--project",
                project,
                "--experiment",
                &key,
                "hello.py",
            ]);
            key
        })
        .collect()
}

fn keys_of(page: &Value) -> Vec<String> {
    page["experiments"]
        .as_array()
        .expect("experiments array")
        .iter()
        .map(|experiment| experiment["key"].as_str().expect("key").to_string())
        .collect()
}

#[test]
fn list_pages_with_cursors_and_fields() {
    let studio = Studio::new();
    let keys = run_finished(&studio, "paging", 5);
    let address = studio.http_address();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => {
                format!("/api/v1/experiments?limit=2&fields=key,status&cursor={cursor}")
            }
            None => "/api/v1/experiments?limit=2&fields=key,status".to_string(),
        };
        let answer = get(&address, &path);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let page = answer.json();
        assert_eq!(page["total"], 5);
        for experiment in page["experiments"].as_array().unwrap() {
            let names: BTreeSet<&str> = experiment
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(names, BTreeSet::from(["key", "status"]));
        }
        seen.extend(keys_of(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = keys.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let oldest_first = get(&address, "/api/v1/experiments?sort=-time&fields=key").json();
    assert_eq!(keys_of(&oldest_first), keys);
    let by_metric = get(&address, "/api/v1/experiments?sort=metric&limit=3").json();
    assert_eq!(keys_of(&by_metric).len(), 3);
    assert_eq!(by_metric["next_cursor"], "o3");
}

#[test]
fn list_filters_by_project_owner_status_and_text() {
    let studio = Studio::new();
    run_finished(&studio, "alpha", 2);
    run_finished(&studio, "beta", 1);
    let address = studio.http_address();
    let user = get(&address, "/api/v1/daemon").json()["user"]
        .as_str()
        .unwrap()
        .to_string();

    let alpha = get(&address, "/api/v1/experiments?project=alpha").json();
    assert_eq!(alpha["total"], 2);
    assert_eq!(keys_of(&alpha), ["alpha-1", "alpha-0"]);
    let mine = get(&address, &format!("/api/v1/experiments?owner={user}")).json();
    assert_eq!(mine["total"], 3);
    let nobody = get(&address, "/api/v1/experiments?owner=nobody-here").json();
    assert_eq!(nobody["total"], 0);
    let finished = get(&address, "/api/v1/experiments?status=finished").json();
    assert_eq!(finished["total"], 3);
    let running = get(&address, "/api/v1/experiments?status=running").json();
    assert_eq!(running["total"], 0);
    let text = get(&address, "/api/v1/experiments?q=BETA").json();
    assert_eq!(keys_of(&text), ["beta-0"]);
}

#[test]
fn list_rejects_bad_queries_with_the_fix() {
    let studio = Studio::new();
    let address = studio.http_address();
    let cases = [
        ("/api/v1/experiments?cursor=zz", "invalid cursor \"zz\""),
        ("/api/v1/experiments?sort=colour", "invalid sort \"colour\""),
        (
            "/api/v1/experiments?fields=key,colour",
            "unknown field \"colour\"",
        ),
        ("/api/v1/experiments?limit=0", "invalid limit 0"),
        ("/api/v1/experiments?status=done", "unknown variant `done`"),
        ("/api/v1/experiments?limit=many", "invalid query"),
    ];
    for (path, expected) in cases {
        let answer = get(&address, path);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert!(answer.error().contains(expected), "{path}: {}", answer.body);
    }
}

#[test]
fn one_experiment_and_unknown_key() {
    let studio = Studio::new();
    run_finished(&studio, "show", 1);
    let address = studio.http_address();

    let answer = get(&address, "/api/v1/experiments/show-0");
    assert_eq!(answer.status, 200);
    let experiment = answer.json();
    assert_eq!(experiment["key"], "show-0");
    assert_eq!(experiment["status"], "finished");
    assert_eq!(experiment["project"], "show");

    let missing = get(&address, "/api/v1/experiments/nope");
    assert_eq!(missing.status, 404);
    assert!(
        missing.error().contains("experiment nope not found"),
        "{}",
        missing.body
    );
    let no_route = get(&address, "/api/v1/nothing");
    assert_eq!(no_route.status, 404);
    assert!(
        no_route.error().contains("/api/v1/openapi.json"),
        "{}",
        no_route.body
    );
}

#[test]
fn output_by_range_raw_follow_and_events() {
    let studio = Studio::new();
    run_finished(&studio, "out", 1);
    let address = studio.http_address();
    let whole = "hello from Studio\n";

    let all = get(&address, "/api/v1/experiments/out-0/output");
    assert_eq!(all.status, 200);
    assert_eq!(all.body, whole);
    assert_eq!(all.header("x-output-size"), Some("18"));
    let range = get(
        &address,
        "/api/v1/experiments/out-0/output?offset=6&length=4",
    );
    assert_eq!(range.body, "from");
    let past_end = get(&address, "/api/v1/experiments/out-0/output?offset=100");
    assert_eq!(past_end.body, "");
    let bad = get(&address, "/api/v1/experiments/out-0/output?offset=-1");
    assert_eq!(bad.status, 400);

    let raw = get(&address, "/api/v1/experiments/out-0/output?follow=true");
    assert_eq!(raw.body, whole);

    let events = request(
        &address,
        "GET",
        "/api/v1/experiments/out-0/output",
        &[("Accept", "text/event-stream")],
        "",
    );
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert!(events.body.contains("event: output\n"), "{}", events.body);
    assert!(
        events
            .body
            .contains("data: {\"text\":\"hello from Studio\\n\"}"),
        "{}",
        events.body
    );
    assert!(events.body.contains("id: 18\n"), "{}", events.body);
    assert!(
        events
            .body
            .contains("event: end\ndata: {\"status\":\"finished\"}"),
        "{}",
        events.body
    );

    let resumed = request(
        &address,
        "GET",
        "/api/v1/experiments/out-0/output",
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "6")],
        "",
    );
    assert!(
        resumed.body.contains("data: {\"text\":\"from Studio\\n\"}"),
        "{}",
        resumed.body
    );
}

#[test]
fn output_events_follow_a_running_experiment() {
    let studio = Studio::new();
    studio.write("loop.py", LOOP);
    let key = studio.detach(&["loop.py"]);
    let address = studio.http_address();
    let token = studio.dashboard_token();

    let mut stream = open_stream(
        &address,
        &format!("/api/v1/experiments/{key}/output"),
        &[("Accept", "text/event-stream")],
    );
    read_stream_until(&mut stream, "step 3 in the event stream", |text| {
        text.contains("step 3\\n")
    });

    let stop = change(
        &address,
        &token,
        "POST",
        &format!("/api/v1/experiments/{key}/stop"),
        &[],
        "",
    );
    assert_eq!(stop.status, 200, "{}", stop.body);
    read_stream_until(&mut stream, "the end event", |text| {
        text.contains("event: end\ndata: {\"status\":\"stopped\"}")
    });
}

#[test]
fn stop_and_delete_over_http() {
    let studio = Studio::new();
    studio.write("loop.py", LOOP);
    let key = studio.detach(&["loop.py"]);
    studio.wait_for_status(&key, "running");
    let address = studio.http_address();
    let token = studio.dashboard_token();

    let stop = change(
        &address,
        &token,
        "POST",
        &format!("/api/v1/experiments/{key}/stop"),
        &[],
        "",
    );
    assert_eq!(stop.status, 200, "{}", stop.body);
    studio.wait_for_status(&key, "stopped");

    let delete = change(
        &address,
        &token,
        "DELETE",
        &format!("/api/v1/experiments/{key}"),
        &[],
        "",
    );
    assert_eq!(delete.status, 204, "{}", delete.body);
    assert_eq!(
        get(&address, &format!("/api/v1/experiments/{key}")).status,
        404
    );
    let again = change(
        &address,
        &token,
        "DELETE",
        &format!("/api/v1/experiments/{key}"),
        &[],
        "",
    );
    assert_eq!(again.status, 404);
    let stop_missing = change(
        &address,
        &token,
        "POST",
        "/api/v1/experiments/nope/stop",
        &[],
        "",
    );
    assert_eq!(stop_missing.status, 404);
}

#[test]
fn tags_projects_and_users() {
    let studio = Studio::new();
    run_finished(&studio, "alpha", 2);
    run_finished(&studio, "beta", 1);
    let address = studio.http_address();
    let token = studio.dashboard_token();
    let json = [("Content-Type", "application/json")];

    let tagged = change(
        &address,
        &token,
        "PUT",
        "/api/v1/experiments/alpha-0/tags",
        &json,
        r#"{"seed":"7"}"#,
    );
    assert_eq!(tagged.status, 200, "{}", tagged.body);
    assert_eq!(tagged.json()["tags"]["seed"], "7");
    let invalid = change(
        &address,
        &token,
        "PUT",
        "/api/v1/experiments/alpha-0/tags",
        &json,
        r#"["seed"]"#,
    );
    assert_eq!(invalid.status, 400);
    assert!(invalid.error().contains("invalid tags"), "{}", invalid.body);

    let projects = get(&address, "/api/v1/projects").json();
    let counts: Vec<(String, u64)> = projects
        .as_array()
        .unwrap()
        .iter()
        .map(|project| {
            (
                project["name"].as_str().unwrap().to_string(),
                project["experiments"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("alpha".to_string(), 2), ("beta".to_string(), 1)]);

    let users = get(&address, "/api/v1/users").json();
    let user = get(&address, "/api/v1/daemon").json()["user"].clone();
    assert_eq!(users[0]["name"], user);
    assert_eq!(users[0]["experiments"], 3);
    assert_eq!(users[0]["running"], 0);
}

#[test]
fn event_stream_sends_new_events() {
    let studio = Studio::new();
    let address = studio.http_address();
    let mut stream = open_stream(&address, "/api/v1/events", &[]);
    read_stream_until(&mut stream, "the stream's headers", |text| {
        text.contains("text/event-stream")
    });

    run_finished(&studio, "live", 1);
    let text = read_stream_until(&mut stream, "ExperimentFinished of live-0", |text| {
        text.contains("event: ExperimentFinished")
    });
    assert!(text.contains("event: ExperimentCreated"), "{text}");
    assert!(text.contains("\"key\":\"live-0\""), "{text}");
}

#[test]
fn daemon_info_and_dashboard_files() {
    let studio = Studio::new();
    let address = studio.http_address();
    let info = get(&address, "/api/v1/daemon").json();
    assert_eq!(info["http"], address.as_str());
    assert!(
        info.get("dashboard_token").is_none(),
        "the HTTP port must not hand out the token: {info}"
    );
    assert!(!info["user"].as_str().unwrap().is_empty());

    let index = get(&address, "/");
    assert_eq!(index.status, 200);
    assert!(index.body.contains("/app.js"), "{}", index.body);
    let script = get(&address, "/app.js");
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.body.contains("/api/v1/events"));
    assert_eq!(get(&address, "/style.css").status, 200);
}

/// Writes the TensorBoard scalar `loss` for steps 0 to 4 with tensorboardX.
const SCALARS_SCRIPT: &str = r#"
import json, os
from tensorboardX import SummaryWriter
tb = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))["tb"]
writer = SummaryWriter(tb)
for step in range(5):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.close()
"#;

#[test]
fn scalar_chart_draws_tensorboard_scalars() {
    let studio = Studio::new();
    studio.write("tb.py", SCALARS_SCRIPT);
    studio.ok(&["run", "--experiment", "charted", "tb.py"]);
    let address = studio.http_address();
    wait_until("the loss scalars", || {
        get(&address, "/api/v1/experiments/charted/scalars")
            .body
            .contains("\"loss\"")
    });

    let chart = get(&address, "/api/v1/experiments/charted/scalars.svg?tag=loss");
    assert_eq!(chart.status, 200, "{}", chart.body);
    assert_eq!(chart.header("content-type"), Some("image/svg+xml"));
    assert!(chart.body.starts_with("<svg"), "{}", chart.body);
    assert!(chart.body.contains("<polyline"), "{}", chart.body);

    let unknown = get(
        &address,
        "/api/v1/experiments/charted/scalars.svg?tag=accuracy",
    );
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.error().contains("its scalars are: loss"),
        "{}",
        unknown.body
    );
}

#[test]
fn scalar_chart_without_scalars_is_not_found() {
    let studio = Studio::new();
    run_finished(&studio, "chart", 1);
    let address = studio.http_address();
    let missing_tag = get(&address, "/api/v1/experiments/chart-0/scalars.svg");
    assert_eq!(missing_tag.status, 400);
    assert!(
        missing_tag.error().contains("?tag=NAME"),
        "{}",
        missing_tag.body
    );
    let answer = get(&address, "/api/v1/experiments/chart-0/scalars.svg?tag=loss");
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        answer.error().contains("its scalars are: none"),
        "{}",
        answer.body
    );
    let unknown = get(&address, "/api/v1/experiments/nope/scalars.svg?tag=loss");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[test]
fn foreign_host_is_rejected() {
    let studio = Studio::new();
    let address = studio.http_address();
    for host in [
        "evil.example",
        "evil.example:5000",
        "localhost.evil.example",
        "10.0.0.1",
    ] {
        let answer = request(
            &address,
            "GET",
            "/api/v1/experiments",
            &[("Host", host)],
            "",
        );
        assert_eq!(answer.status, 403, "{host}");
        assert!(
            answer.error().contains("not a loopback name"),
            "{host}: {}",
            answer.body
        );
    }
    let port = address.rsplit_once(':').unwrap().1;
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let answer = request(
            &address,
            "GET",
            "/api/v1/experiments",
            &[("Host", &host)],
            "",
        );
        assert_eq!(answer.status, 200, "{host}");
    }
}

#[test]
fn cross_origin_and_form_posts_are_rejected() {
    let studio = Studio::new();
    studio.write("loop.py", LOOP);
    let key = studio.detach(&["loop.py"]);
    studio.wait_for_status(&key, "running");
    let address = studio.http_address();
    let token = studio.dashboard_token();
    let stop = format!("/api/v1/experiments/{key}/stop");
    let delete = format!("/api/v1/experiments/{key}");

    let cross_origin = request(
        &address,
        "POST",
        &stop,
        &[("Origin", "http://evil.example"), REQUESTED_WITH],
        "",
    );
    assert_eq!(cross_origin.status, 403);
    assert!(
        cross_origin.error().contains("cross-origin POST"),
        "{}",
        cross_origin.body
    );
    let cross_site = request(
        &address,
        "DELETE",
        &delete,
        &[("Sec-Fetch-Site", "cross-site"), REQUESTED_WITH],
        "",
    );
    assert_eq!(cross_site.status, 403);
    let form = request(
        &address,
        "POST",
        &stop,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "a=b",
    );
    assert_eq!(form.status, 403);
    assert!(
        form.error().contains("X-Requested-With") || form.error().contains("x-requested-with"),
        "{}",
        form.body
    );
    let bare_delete = request(&address, "DELETE", &delete, &[], "");
    assert_eq!(bare_delete.status, 403);
    assert_eq!(studio.experiment(&key)["status"], "running");

    let wrong_token = request(
        &address,
        "POST",
        &stop,
        &[REQUESTED_WITH, ("Authorization", "Bearer 0123")],
        "",
    );
    assert_eq!(wrong_token.status, 401);
    assert!(
        wrong_token.error().contains("studio ui"),
        "{}",
        wrong_token.body
    );
    // The HTTP port cannot tell local users apart, so callers without the
    // token may only read, whoever runs studiod.
    let without_token = request(&address, "POST", &stop, &[REQUESTED_WITH], "");
    assert_eq!(without_token.status, 403, "{}", without_token.body);
    assert!(
        without_token.error().contains("anonymous"),
        "{}",
        without_token.body
    );
    assert_eq!(studio.experiment(&key)["status"], "running");
    let shutdown = request(
        &address,
        "POST",
        "/api/v1/daemon/shutdown",
        &[REQUESTED_WITH],
        "",
    );
    assert_eq!(shutdown.status, 403, "{}", shutdown.body);
    assert!(shutdown.error().contains("studio ui"), "{}", shutdown.body);
    assert!(studio.daemon_pid().is_some());

    let same_origin = format!("http://{address}");
    let allowed = change(
        &address,
        &token,
        "POST",
        &stop,
        &[("Origin", &same_origin)],
        "",
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    studio.wait_for_status(&key, "stopped");
}

/// Routes of the router, read from the sources that build it: `(METHOD,
/// path)` for every `.route("path", get(..).post(..))`.
fn router_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in [
        "studiod/src/api.rs",
        "studiod/src/tensorboard_ui.rs",
        "studiod/src/artifacts/http.rs",
    ] {
        let source = std::fs::read_to_string(repository().join(file)).unwrap();
        for part in source.split(".route(").skip(1) {
            let path = part.split('"').nth(1).expect("route path");
            let mut depth = 1;
            let end = part
                .char_indices()
                .find(|(_, character)| {
                    match character {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(part.len(), |(index, _)| index);
            let handlers = &part[..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = handlers.contains(&format!(" {method}("))
                    || handlers.contains(&format!(".{method}("))
                    || handlers.contains(&format!("({method}("));
                if called {
                    routes.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    routes
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn openapi_document_matches_the_router() {
    let studio = Studio::new();
    run_finished(&studio, "doc", 1);
    let address = studio.http_address();
    let answer = get(&address, "/api/v1/openapi.json");
    assert_eq!(answer.status, 200);
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    let in_repository: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("web/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(document, in_repository);

    let routes = router_routes();
    assert!(routes.len() >= 15, "too few routes parsed: {routes:?}");
    let documented = documented_routes(&document);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from web/openapi.json: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "documented routes the router lacks: {unrouted:?}"
    );

    // Every documented path reaches a route of the running daemon: PATCH is
    // no route's method, so a known path answers 405 and an unknown 404.
    for path in document["paths"].as_object().unwrap().keys() {
        let concrete = path.replace("{key}", "doc-0").replace("{tag}", "output");
        let answer = request(&address, "PATCH", &concrete, &[REQUESTED_WITH], "");
        assert_eq!(answer.status, 405, "{path}: {}", answer.body);
    }
}

#[test]
fn tensorboard_missing_and_started() {
    let mut studio = Studio::new();
    let bin = studio.work().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let arguments = studio.work().join("tensorboard-arguments");
    let script = bin.join("tensorboard");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\nexec sleep 600\n",
            arguments.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    studio.env("PATH", &path);
    run_finished(&studio, "board", 1);
    let address = studio.http_address();
    let token = studio.dashboard_token();
    let json = [("Content-Type", "application/json")];

    let availability = get(&address, "/api/v1/tensorboard").json();
    assert_eq!(availability["installed"], true);
    let started = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"experiment":"board-0"}"#,
    );
    assert_eq!(started.status, 200, "{}", started.body);
    let url = started.json()["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let pid = started.json()["pid"].as_u64().unwrap() as u32;
    wait_until("the fake tensorboard to record its arguments", || {
        arguments.exists()
    });
    let recorded = std::fs::read_to_string(&arguments).unwrap();
    let tb = studio
        .studio_home()
        .join("experiments")
        .join("board-0")
        .join("tb");
    assert!(
        recorded.contains(&format!("--logdir {}", tb.display())),
        "{recorded}"
    );
    assert!(recorded.contains("--host 127.0.0.1 --port "), "{recorded}");
    let again = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"experiment":"board-0"}"#,
    );
    assert_eq!(again.json()["url"], url.as_str());

    let missing = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"experiment":"nope"}"#,
    );
    assert_eq!(missing.status, 404);
    let both = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"experiment":"a","project":"b"}"#,
    );
    assert_eq!(both.status, 400);
    let no_tb = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"project":"nope"}"#,
    );
    assert_eq!(no_tb.status, 404);

    studio.ok(&["daemon", "stop"]);
    wait_until("studiod to stop the tensorboard it started", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });

    let mut bare = Studio::new();
    bare.env("PATH", "/usr/bin:/bin");
    let address = bare.http_address();
    let token = bare.dashboard_token();
    assert_eq!(
        get(&address, "/api/v1/tensorboard").json()["installed"],
        false
    );
    let refused = change(
        &address,
        &token,
        "POST",
        "/api/v1/tensorboard",
        &json,
        r#"{"project":"any"}"#,
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.error().contains("pip install tensorboard"),
        "{}",
        refused.body
    );
}

#[test]
fn ui_open_starts_xdg_open() {
    let mut studio = Studio::new();
    let bin = studio.work().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = studio.work().join("opened-url");
    let script = bin.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" > {}.tmp\nmv {0}.tmp {0}\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    studio.env("PATH", &path);

    let printed = studio.ok(&["ui", "--open"]);
    wait_until("xdg-open to receive the address", || opened.exists());
    let url = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(url.trim(), printed.trim());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("/#token="), "{url}");
}

/// An `EventSource` receives only the event names it listens to, so the
/// dashboard must name every kind that `/api/v1/events` sends.
#[test]
fn dashboard_listens_to_every_event_kind() {
    let events = std::fs::read_to_string(repository().join("studiod/src/events.rs")).unwrap();
    let dashboard = std::fs::read_to_string(repository().join("web/app.js")).unwrap();
    let body = events
        .split("pub fn kind(&self)")
        .nth(1)
        .expect("Event::kind in events.rs");
    let body = &body[..body.find("\n    }\n").expect("end of Event::kind")];
    let kinds: Vec<&str> = body
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(kinds.len() >= 10, "too few kinds parsed: {kinds:?}");
    for kind in kinds {
        assert!(
            dashboard.contains(&format!("\"{kind}\"")),
            "web/app.js does not listen to {kind} events"
        );
    }
}
