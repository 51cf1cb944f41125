//! `studio artifacts list|get`, and the parsing of the artifact flags of
//! `studio run` (`--capture-once`, `--capture`, `--reuse`).

use crate::cli::{ArtifactsArgs, ArtifactsCommand};
use crate::client::{encode_segment, Client};
use anyhow::{bail, Context};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use studio_core::api::{ArtifactEntry, ArtifactRequest, CaptureProgress};
use studiod::artifacts::validate_tag;

pub async fn artifacts(client: &Client, args: ArtifactsArgs) -> anyhow::Result<()> {
    match args.command {
        ArtifactsCommand::List { key, json } => list(client, &key, json).await,
        ArtifactsCommand::Get { key, tag, dest } => get(client, &key, &tag, dest).await,
    }
}

async fn list(client: &Client, key: &str, json: bool) -> anyhow::Result<()> {
    let path = format!("/api/v1/experiments/{}/artifacts", encode_segment(key));
    let entries: Vec<ArtifactEntry> = client.json(hyper::Method::GET, &path, None::<&()>).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<14} {:>10} {:>7}  {:<9} STORED",
        "TAG", "DIGEST", "SIZE", "FILES", "KIND"
    );
    for entry in entries {
        let kind = if entry.view.mutable {
            "mutable"
        } else {
            "immutable"
        };
        println!(
            "{:<16} {:<14} {:>10} {:>7}  {:<9} {}",
            entry.tag,
            &entry.view.digest[..entry.view.digest.len().min(12)],
            human_bytes(entry.view.size),
            entry.view.files,
            kind,
            crate::format::local_time(entry.view.time)
        );
    }
    Ok(())
}

/// Downloads the artifact's tar.gz into a temporary file beside DEST, then
/// unpacks it with the checks of [`studiod::artifacts::unpack`].
async fn get(client: &Client, key: &str, tag: &str, dest: Option<PathBuf>) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    use std::io::Write;
    let dest = dest.unwrap_or_else(|| PathBuf::from(tag));
    let to_stdout = dest.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!(
            "standard output is a terminal: redirect the tar.gz of {key}/{tag} to a file or a pipe, as in `studio artifacts get {key} {tag} - | tar tz`"
        );
    }
    if !to_stdout && std::fs::symlink_metadata(&dest).is_ok() {
        bail!(
            "{} already exists: choose a destination that does not exist yet",
            dest.display()
        );
    }
    let path = format!(
        "/api/v1/experiments/{}/artifacts/{}",
        encode_segment(key),
        encode_segment(tag)
    );

    // studiod ends the answer early when the blob fails its digest check;
    // for a small blob that can happen before the headers were sent.
    let response = client
        .send(hyper::Method::GET, &path, None)
        .await
        .with_context(|| {
            format!(
                "download of {key}/{tag} failed: the stored blob may be corrupt or studiod stopped; see the studiod log"
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let bytes = response.into_body().collect().await?.to_bytes();
        return Err(crate::client::api_error(status, &bytes).into());
    }

    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| incomplete_download(key, tag))?;
            if let Some(data) = frame.data_ref() {
                stdout.write_all(data)?;
            }
        }
        stdout.flush()?;
        return Ok(());
    }

    let parent = dest
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let total = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut last_report = std::time::Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| incomplete_download(key, tag))?;
        if let Some(data) = frame.data_ref() {
            temp.write_all(data)?;
            received += data.len() as u64;
        }
        // Progress for downloads that take a while: above 4 MiB, once a second.
        if received > PROGRESS_THRESHOLD
            && last_report.elapsed() >= std::time::Duration::from_secs(1)
        {
            let of_total =
                total.map_or(String::new(), |total| format!(" of {}", human_bytes(total)));
            eprintln!(
                "studio: downloading {key}/{tag}: {}{of_total}",
                human_bytes(received)
            );
            last_report = std::time::Instant::now();
        }
    }
    temp.flush()?;

    let reader = std::fs::File::open(temp.path())?;
    let files = studiod::artifacts::unpack::unpack(reader, &dest)?;
    let noun = if files == 1 { "file" } else { "files" };
    eprintln!(
        "studio: unpacked {files} {noun} of {key}/{tag} into {}",
        dest.display()
    );
    Ok(())
}

fn incomplete_download(key: &str, tag: &str) -> String {
    format!(
        "download of {key}/{tag} stopped before its end: the stored blob may be corrupt or studiod stopped; see the studiod log"
    )
}

/// Turns the artifact flags of `studio run` into requests, rejecting a
/// missing `:TAG`, an invalid or duplicate tag, a `--capture-once` path
/// that does not exist and a malformed `--reuse`. `~` is expanded with
/// `home` and relative paths are made absolute from `cwd`.
pub fn parse_run_flags(
    capture_once: &[String],
    capture: &[String],
    reuse: &[String],
    cwd: &Path,
    home: Option<&Path>,
) -> anyhow::Result<Vec<ArtifactRequest>> {
    let mut requests = Vec::new();
    for spec in capture_once {
        let (location, tag) = split_tag("--capture-once", spec, "PATH:TAG or URL:TAG")?;
        let is_url = ["http://", "https://", "s3://", "gs://"]
            .iter()
            .any(|scheme| location.starts_with(scheme));
        if is_url {
            requests.push(ArtifactRequest::Download { tag, url: location });
            continue;
        }
        let path = local_path(&location, cwd, home)?;
        if location != "null" && std::fs::symlink_metadata(&path).is_err() {
            bail!(
                "--capture-once path {} does not exist: check the path in {spec:?}",
                path.display()
            );
        }
        requests.push(ArtifactRequest::CaptureOnce { tag, path });
    }
    for spec in capture {
        let (location, tag) = split_tag("--capture", spec, "PATH:TAG")?;
        if location.contains("://") {
            bail!("invalid --capture {spec:?}: --capture takes a local path; use --capture-once for a URL");
        }
        let path = local_path(&location, cwd, home)?;
        requests.push(ArtifactRequest::Capture { tag, path });
    }
    for spec in reuse {
        let (source, tag) = split_tag("--reuse", spec, "KEY/TAG:NEWTAG")?;
        let Some((experiment, source_tag)) = source.split_once('/') else {
            bail!("invalid --reuse {spec:?}: write KEY/TAG:NEWTAG, as in --reuse=linear_regression/weights:w");
        };
        if experiment.is_empty() || source_tag.is_empty() {
            bail!("invalid --reuse {spec:?}: write KEY/TAG:NEWTAG, as in --reuse=linear_regression/weights:w");
        }
        requests.push(ArtifactRequest::Reuse {
            tag,
            experiment: experiment.to_string(),
            source_tag: source_tag.to_string(),
        });
    }
    let mut seen = HashSet::new();
    for request in &requests {
        if !seen.insert(request.tag()) {
            bail!(
                "artifact tag {:?} is given twice: give each --capture, --capture-once and --reuse its own tag",
                request.tag()
            );
        }
    }
    Ok(requests)
}

/// Splits `LOCATION:TAG` at the last `:` and checks the tag.
fn split_tag(flag: &str, spec: &str, form: &str) -> anyhow::Result<(String, String)> {
    let Some((location, tag)) = spec.rsplit_once(':') else {
        bail!("missing :TAG in {flag} {spec:?}: write {form}");
    };
    if location.is_empty() {
        bail!("missing path in {flag} {spec:?}: write {form}");
    }
    validate_tag(tag)
        .map_err(|message| anyhow::anyhow!("{flag} {spec:?}: {message}; write {form}"))?;
    Ok((location.to_string(), tag.to_string()))
}

/// Expands `~` and makes the path absolute; `null` stays as it is.
fn local_path(location: &str, cwd: &Path, home: Option<&Path>) -> anyhow::Result<PathBuf> {
    if location == "null" {
        return Ok(PathBuf::from(location));
    }
    let expanded = if location == "~" || location.starts_with("~/") {
        let home = home.context("cannot expand ~: HOME is not set; give the full path")?;
        home.join(location.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(location)
    };
    Ok(if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    })
}

/// Prints the progress of the final capture while `studio run` waits for it.
#[derive(Default)]
pub struct FinalCaptureReporter {
    announced: bool,
    last_print: Option<std::time::Instant>,
}

impl FinalCaptureReporter {
    pub async fn poll(&mut self, client: &Client, key: &str) {
        let path = format!("/api/v1/experiments/{}/captures", encode_segment(key));
        let Ok(progress) = client
            .json::<CaptureProgress>(hyper::Method::GET, &path, None::<&()>)
            .await
        else {
            return;
        };
        if !progress.final_capture || progress.running.is_empty() {
            return;
        }
        let tags: Vec<String> = progress
            .running
            .iter()
            .map(|state| {
                if state.bytes_to_send > 0 {
                    let retrying = state
                        .retrying
                        .as_deref()
                        .map_or(String::new(), |retrying| format!("; retrying: {retrying}"));
                    format!(
                        "{} (uploading {} of {}{retrying})",
                        state.tag,
                        human_bytes(state.bytes_sent),
                        human_bytes(state.bytes_to_send)
                    )
                } else {
                    format!(
                        "{} (packing {} of {})",
                        state.tag,
                        human_bytes(state.bytes_read),
                        human_bytes(state.bytes_total)
                    )
                }
            })
            .collect();
        if !self.announced {
            self.announced = true;
            eprintln!(
                "studio: waiting for the final capture of the artifacts: {}",
                tags.join(", ")
            );
            self.last_print = Some(std::time::Instant::now());
            return;
        }
        if self
            .last_print
            .is_none_or(|last| last.elapsed() >= std::time::Duration::from_secs(2))
        {
            eprintln!("studio: still capturing: {}", tags.join(", "));
            self.last_print = Some(std::time::Instant::now());
        }
    }
}

/// Bytes in B, KiB, MiB or GiB with one decimal.
/// Downloads above this many bytes report their progress.
const PROGRESS_THRESHOLD: u64 = 4 << 20;

pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn flags_become_requests() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir(directory.path().join("data")).unwrap();
        let requests = parse_run_flags(
            &strings(&["data/:d", "https://127.0.0.1:8000/x.csv:x"]),
            &strings(&["~/.weights:weights"]),
            &strings(&["linear_regression/weights:w"]),
            directory.path(),
            Some(Path::new("/home/ada")),
        )
        .unwrap();
        assert_eq!(
            requests,
            [
                ArtifactRequest::CaptureOnce {
                    tag: "d".into(),
                    path: directory.path().join("data/"),
                },
                ArtifactRequest::Download {
                    tag: "x".into(),
                    url: "https://127.0.0.1:8000/x.csv".into(),
                },
                ArtifactRequest::Capture {
                    tag: "weights".into(),
                    path: "/home/ada/.weights".into(),
                },
                ArtifactRequest::Reuse {
                    tag: "w".into(),
                    experiment: "linear_regression".into(),
                    source_tag: "weights".into(),
                },
            ]
        );
    }

    #[test]
    fn bad_flags_are_rejected() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir(directory.path().join("data")).unwrap();
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a str);
        let cases: [Case; 7] = [
            (&["data"], &[], &[], "missing :TAG"),
            (&["missing:m"], &[], &[], "does not exist"),
            (&["data:a", "data:a"], &[], &[], "given twice"),
            (&["data:a"], &["data:a"], &[], "given twice"),
            (&[], &["http://h/x:x"], &[], "use --capture-once"),
            (&[], &[], &["nokey:w"], "KEY/TAG:NEWTAG"),
            (&["data:bad/tag"], &[], &[], "invalid artifact tag"),
        ];
        for (once, capture, reuse, expected) in cases {
            let error = parse_run_flags(
                &strings(once),
                &strings(capture),
                &strings(reuse),
                directory.path(),
                None,
            )
            .unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{once:?} {capture:?} {reuse:?}: {error}"
            );
        }
    }
}
