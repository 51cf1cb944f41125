//! `studio logs [-f] KEY`.

use crate::cli::LogsArgs;
use crate::client::{encode_segment, Client};
use std::io::Write;

pub async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    copy_output(client, &args.key, 0, args.follow).await?;
    Ok(())
}

/// Copies the experiment's output from `offset` to stdout; with `follow`,
/// until the experiment ends. Returns the offset reached. A connection cut
/// while following (studiod restarting) is resumed where it stopped.
pub async fn copy_output(
    client: &Client,
    key: &str,
    mut offset: u64,
    follow: bool,
) -> anyhow::Result<u64> {
    use http_body_util::BodyExt;
    let mut retries = 0;
    loop {
        let path = format!(
            "/api/v1/experiments/{}/output?offset={offset}&follow={follow}",
            encode_segment(key)
        );
        let response = match client.send(hyper::Method::GET, &path, None).await {
            Ok(response) => response,
            Err(error) if follow && retries < 60 => {
                retries += 1;
                if retries == 1 {
                    eprintln!("studio: lost studiod ({error:#}); reconnecting");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let status = response.status();
        if !status.is_success() {
            let bytes = response.into_body().collect().await?.to_bytes();
            return Err(crate::client::api_error(status, &bytes).into());
        }
        let mut body = response.into_body();
        let mut stdout = std::io::stdout().lock();
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        stdout.write_all(data)?;
                        stdout.flush()?;
                        offset += data.len() as u64;
                    }
                }
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        if !(cut && follow) {
            return Ok(offset);
        }
        retries = 0;
    }
}
