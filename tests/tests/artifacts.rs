//! Artifacts end to end: capture, reuse, the deduplicating store, and the
//! client commands, through the real `studio` and `studiod` binaries.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use studio_tests::{repository, stderr, stdout, wait_until, Studio};

/// Copies the general examples into the work directory.
fn with_examples(studio: &Studio) {
    let source = repository().join("examples").join("general");
    let target = studio.work().join("examples").join("general");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
}

/// Stored blobs and their sizes.
fn blobs(studio: &Studio) -> Vec<(String, u64)> {
    let directory = studio.studio_home().join("artifacts").join("blobs");
    let mut found: Vec<_> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let size = entry.metadata().unwrap().len();
                    (entry.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn artifacts(studio: &Studio, key: &str) -> Value {
    serde_json::from_str(&studio.ok(&["artifacts", "list", key, "--json"])).unwrap()
}

fn tags(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["tag"].as_str().unwrap().to_string())
        .collect()
}

/// Writes `size` bytes of pseudo-random (incompressible) data.
fn write_random(path: &Path, size: usize, seed: u64) {
    let mut state = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut remaining = size;
    let mut block = vec![0u8; 1 << 16];
    while remaining > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let count = remaining.min(block.len());
        file.write_all(&block[..count]).unwrap();
        remaining -= count;
    }
}

#[test]
fn docs_example_reuses_captured_weights() {
    let studio = Studio::new();
    with_examples(&studio);
    let output = studio.studio(&[
        "run",
        "--capture=~/.weights:weights",
        "--experiment",
        "linear_regression",
        "examples/general/train_linreg.py",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let training = stdout(&output);
    let last_norm = training
        .lines()
        .rev()
        .find_map(|line| line.split("L2 norm = ").nth(1))
        .expect("training printed the L2 norm")
        .trim()
        .to_string();

    // The user's own path is captured: the script wrote into ~/.weights.
    let user_weights = std::fs::read_dir(studio.home().join(".weights"))
        .unwrap()
        .count();
    assert_eq!(user_weights, 10);
    let list = artifacts(&studio, "linear_regression");
    let weights = list
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["tag"] == "weights")
        .expect("weights artifact stored");
    assert_eq!(weights["files"], 10);
    assert_eq!(weights["mutable"], true);

    let output = studio.studio(&[
        "run",
        "--reuse=linear_regression/weights:w",
        "examples/general/print_norm_linreg.py",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let printed = stdout(&output);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines[1].ends_with("lr_w_09_") || lines[1].contains("lr_w_09_"),
        "{printed}"
    );
    assert_eq!(lines[2].trim(), last_norm, "{printed}");
}

#[test]
fn default_artifacts_are_stored() {
    let studio = Studio::new();
    studio.write("hello.py", "print('hello')\n");
    let output = studio.studio(&["run", "-e", "defaults", "hello.py"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let list = artifacts(&studio, "defaults");
    assert_eq!(
        tags(&list),
        ["_metrics", "modeldir", "output", "tb", "workspace"],
        "{list}"
    );
    let experiment = studio.experiment("defaults");
    assert_eq!(experiment["status"], "finished");
    assert!(experiment["artifacts"]["output"]["digest"].is_string());

    let destination = studio.work().join("restored-output");
    studio.ok(&[
        "artifacts",
        "get",
        "defaults",
        "output",
        destination.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(destination.join("output")).unwrap(),
        "hello\n"
    );

    // DEST `-` writes the stored tar.gz itself to standard output.
    let streamed = studio.studio(&["artifacts", "get", "defaults", "output", "-"]);
    assert!(streamed.status.success(), "{}", stderr(&streamed));
    assert_eq!(&streamed.stdout[..2], [0x1f, 0x8b], "not gzip");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&streamed.stdout);
    let digest: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        experiment["artifacts"]["output"]["digest"], digest,
        "the bytes are not the stored blob"
    );
    assert!(
        !studio.work().join("-").exists(),
        "a directory '-' was created"
    );
}

#[test]
fn capture_once_data_and_ignore_file() {
    let studio = Studio::new();
    studio.write("data/values.txt", "1 2 3\n");
    studio.write("results/snapshot.tar.gz", "not really a tarball");
    studio.write("secret.txt", "do not store\n");
    studio.write("cache/big.bin", "cached\n");
    studio.write(".studioml_ignore", "secret.txt\ncache/\n");
    studio.write(
        "read_data.py",
        "import os\n\
         from studio import fs_tracker\n\
         print(open(os.path.join(fs_tracker.get_artifact('data'), 'values.txt')).read().strip())\n\
         print(open(fs_tracker.get_artifact('snap')).read())\n\
         print(sorted(os.listdir(fs_tracker.get_artifact('slash'))))\n",
    );
    let output = studio.studio(&[
        "run",
        "-e",
        "once",
        "--capture-once=data:data",
        "-co",
        "results/snapshot.tar.gz:snap",
        "--capture-once=data/:slash",
        "read_data.py",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "1 2 3\nnot really a tarball\n['values.txt']\n"
    );

    let list = artifacts(&studio, "once");
    let by_tag = |tag: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["tag"] == tag)
            .unwrap_or_else(|| panic!("no artifact {tag} in {list}"))
            .clone()
    };
    assert_eq!(by_tag("data")["mutable"], false);
    assert_eq!(by_tag("snap")["file"], "snapshot.tar.gz");
    assert_eq!(by_tag("data")["digest"], by_tag("slash")["digest"]);

    let workspace = studio.work().join("ws");
    studio.ok(&[
        "artifacts",
        "get",
        "once",
        "workspace",
        workspace.to_str().unwrap(),
    ]);
    assert!(workspace.join("read_data.py").is_file());
    assert!(workspace.join("data/values.txt").is_file());
    assert!(!workspace.join("secret.txt").exists());
    assert!(!workspace.join("cache").exists());
}

#[test]
fn url_is_downloaded_once() {
    let studio = Studio::new();
    let served = studio.home().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("remote.txt"), "from the server\n").unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = ServerGuard(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&served)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server"),
    );
    wait_until("the test HTTP server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    studio.write(
        "read_remote.py",
        "from studio import fs_tracker\nprint(open(fs_tracker.get_artifact('remote')).read(), end='')\n",
    );
    let flag = format!("--capture-once=http://127.0.0.1:{port}/remote.txt:remote");
    let output = studio.studio(&["run", &flag, "read_remote.py"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "from the server\n");

    // A second run finds the file in the blob cache: the server is gone.
    drop(server);
    let output = studio.studio(&["run", &flag, "read_remote.py"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "from the server\n");
}

struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_artifact_flags_are_rejected() {
    let studio = Studio::new();
    studio.write("hello.py", "print('hello')\n");
    studio.write("data/x.txt", "x");
    let cases: [(&[&str], &str); 6] = [
        (&["--capture-once=missing:m"], "does not exist"),
        (&["--capture-once=data"], "missing :TAG"),
        (
            &["--capture-once=data:a", "--capture=data:a"],
            "given twice",
        ),
        (&["--reuse=nokey/weights:w"], "experiment nokey not found"),
        (&["--reuse=broken:w"], "KEY/TAG:NEWTAG"),
        (&["--capture=http://127.0.0.1:1/x:x"], "--capture-once"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.push("hello.py");
        let output = studio.studio(&args);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(
            stderr(&output).contains(expected),
            "{flags:?}: {}",
            stderr(&output)
        );
    }
    let listing = studio.ok(&["runs", "list", "all", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&listing).unwrap(),
        serde_json::json!([])
    );

    // An unknown tag of a known experiment names the stored tags.
    studio.ok(&["run", "-e", "known", "hello.py"]);
    let output = studio.studio(&["run", "--reuse=known/weights:w", "hello.py"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no stored artifact \"weights\""),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("workspace"), "{}", stderr(&output));
}

#[test]
fn same_directory_is_stored_once_and_freed() {
    let studio = Studio::new();
    let big = studio.home().join("big");
    std::fs::create_dir_all(&big).unwrap();
    for index in 0..50u64 {
        write_random(
            &big.join(format!("part-{index:02}.bin")),
            4 << 20,
            index + 1,
        );
    }
    studio.write("hello.py", "print('hello')\n");
    let before = blobs(&studio).len();
    for key in ["first", "second"] {
        let output = studio.studio(&["run", "-e", key, "--capture-once=~/big:big", "hello.py"]);
        assert!(output.status.success(), "stderr: {}", stderr(&output));
    }
    let large: Vec<_> = blobs(&studio)
        .into_iter()
        .filter(|(_, size)| *size > 100 << 20)
        .collect();
    assert_eq!(large.len(), 1, "{large:?}");
    assert_eq!(
        studio.experiment("first")["artifacts"]["big"]["digest"],
        studio.experiment("second")["artifacts"]["big"]["digest"]
    );
    assert!(before <= blobs(&studio).len());

    studio.ok(&["runs", "kill", "first"]);
    assert_eq!(
        blobs(&studio)
            .iter()
            .filter(|(_, size)| *size > 100 << 20)
            .count(),
        1,
        "the blob is still used by the second experiment"
    );
    studio.ok(&["runs", "kill", "second"]);
    assert_eq!(blobs(&studio), [], "every blob is freed");
}

#[test]
fn corrupt_blob_is_reported_and_nothing_unpacked() {
    let studio = Studio::new();
    studio.write("hello.py", "print('hello')\n");
    studio.ok(&["run", "-e", "victim", "hello.py"]);
    let digest = studio.experiment("victim")["artifacts"]["output"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = studio
        .studio_home()
        .join("artifacts/blobs")
        .join(format!("{digest}.tar.gz"));
    std::fs::write(&blob, crafted_escape_archive()).unwrap();

    let destination = studio.work().join("restored");
    let output = studio.studio(&[
        "artifacts",
        "get",
        "victim",
        "output",
        destination.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("corrupt"), "{}", stderr(&output));
    assert!(!destination.exists());
    assert!(!studio.work().join("escaped.txt").exists());
}

/// Builds a tar.gz with one entry named `../escaped.txt`.
fn crafted_escape_archive() -> Vec<u8> {
    let name = b"../escaped.txt";
    let content = b"escaped";
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    let mut body = content.to_vec();
    body.resize(512, 0);
    tar.extend(body);
    tar.extend([0u8; 1024]);
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    gzip.stdin.take().unwrap().write_all(&tar).unwrap();
    let mut packed = Vec::new();
    gzip.stdout
        .take()
        .unwrap()
        .read_to_end(&mut packed)
        .unwrap();
    assert!(gzip.wait().unwrap().success());
    packed
}

#[test]
fn user_file_created_during_run_is_kept() {
    let studio = Studio::new();
    studio.write(
        "wait_for_file.py",
        "import os, time\n\
         while not os.path.exists('created_later.txt'):\n    time.sleep(0.05)\n\
         print('seen')\n",
    );
    let key = studio.detach(&["--capture-once=.:here", "wait_for_file.py"]);
    studio.wait_for_status(&key, "running");
    let later = studio.write("created_later.txt", "mine\n");
    studio.wait_for_status(&key, "finished");
    assert_eq!(std::fs::read_to_string(&later).unwrap(), "mine\n");
    assert!(studio.work().join("wait_for_file.py").is_file());
}

#[test]
fn capture_runs_periodically_and_on_stop() {
    let studio = Studio::new();
    let config = studio.write(
        "studio.yaml",
        "saveWorkspaceFrequency: 1s\nstop_grace: 5s\n",
    );
    let out = studio.home().join("out");
    studio.write(
        "loop.py",
        "import os, time\n\
         from studio import fs_tracker\n\
         open(os.path.join(fs_tracker.get_artifact('out'), 'a.txt'), 'w').write('a')\n\
         while True:\n    time.sleep(0.1)\n",
    );
    let key = studio.detach(&[
        "--config",
        config.to_str().unwrap(),
        "--capture=~/out:out",
        "loop.py",
    ]);
    wait_until("a periodic capture of out with a.txt", || {
        let experiment = studio.experiment(&key);
        experiment["status"] == "running" && experiment["artifacts"]["out"]["files"] == 1
    });
    std::fs::write(out.join("b.txt"), "b").unwrap();
    studio.ok(&["runs", "stop", &key]);
    let experiment = studio.experiment(&key);
    assert_eq!(experiment["status"], "stopped");
    assert_eq!(experiment["artifacts"]["out"]["files"], 2, "{experiment}");

    let destination: PathBuf = studio.work().join("restored-out");
    studio.ok(&[
        "artifacts",
        "get",
        &key,
        "out",
        destination.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(destination.join("b.txt")).unwrap(),
        "b"
    );
    // The user's directory is untouched by the capture.
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "a");
}

#[test]
fn http_routes_list_and_stream_artifacts() {
    let studio = Studio::new();
    studio.write("hello.py", "print('hello')\n");
    studio.ok(&["run", "-e", "served", "hello.py"]);
    let address = studio.http_address();

    let (status, body) = studio_tests::http(
        &address,
        "GET",
        "/api/v1/experiments/served/artifacts",
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let output = list
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["tag"] == "output")
        .expect("output listed");
    for field in ["digest", "size", "files", "mutable", "time"] {
        assert!(!output[field].is_null(), "{field} missing in {output}");
    }

    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /api/v1/experiments/served/artifacts/output HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/gzip"), "{head}");
    assert!(head.contains("content-disposition: attachment"), "{head}");
    assert_eq!(&response[split + 4..split + 6], &[0x1f, 0x8b], "gzip magic");

    let (status, body) = studio_tests::http(
        &address,
        "GET",
        "/api/v1/experiments/served/artifacts/nope",
        &[],
        "",
    );
    assert_eq!(status, 404);
    assert!(body.contains("no stored artifact"), "{body}");
}

#[test]
fn modified_reuse_cache_is_unpacked_again() {
    let studio = Studio::new();
    studio.write("data/values.txt", "original\n");
    studio.write("noop.py", "pass\n");
    studio.ok(&["run", "-e", "source", "--capture-once=data:data", "noop.py"]);

    // As root the read-only mode does not stop the write, so the script
    // changes the cached copy that --reuse hands out.
    studio.write(
        "tamper.py",
        "import os\nfrom studio import fs_tracker\npath = os.path.join(fs_tracker.get_artifact('d'), 'values.txt')\nos.chmod(path, 0o644)\nopen(path, 'w').write('tampered\\n')\n",
    );
    studio.ok(&["run", "-r", "source/data:d", "tamper.py"]);

    studio.write(
        "read.py",
        "import os\nfrom studio import fs_tracker\nprint(open(os.path.join(fs_tracker.get_artifact('d'), 'values.txt')).read(), end='')\n",
    );
    let output = studio.studio(&["run", "-r", "source/data:d", "read.py"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "original\n");
}

#[test]
fn capture_that_cannot_be_stored_fails_the_experiment() {
    let studio = Studio::new();
    let results = studio.work().join("results");
    studio.write("results/first.txt", "1\n");
    // The script removes its captured directory, so the final capture has
    // nothing to store although the script exits with 0.
    studio.write(
        "remove.py",
        "import shutil\nshutil.rmtree('results')\nprint('done')\n",
    );
    let capture = format!("--capture={}:results", results.display());
    let output = studio.studio(&["run", "-e", "lost", &capture, "remove.py"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("artifacts not stored: results:"),
        "{}",
        stderr(&output)
    );

    let record = studio.experiment("lost");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["exit_code"], 0);
    let errors = record["artifact_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{record}");
    assert!(
        errors[0].as_str().unwrap().starts_with("results: "),
        "{record}"
    );
}
