//! `studio ui`: prints the dashboard's address, with the token that lets it
//! stop and delete experiments, and with `--open` opens it in the browser.

use crate::cli::UiArgs;
use crate::client::Client;
use hyper::Method;
use studio_core::api::DaemonInfo;

pub async fn ui(client: &Client, args: &UiArgs) -> anyhow::Result<()> {
    if args.port.is_some() || args.host.is_some() {
        eprintln!(
            "studio: warning: --port and --host are ignored: studiod serves the dashboard at server.http of {} (or STUDIOML_HTTP)",
            client.paths.config_file().display()
        );
    }
    let info: DaemonInfo = client
        .json(Method::GET, "/api/v1/daemon", None::<&()>)
        .await?;
    let Some(address) = info.http else {
        if let Some(reason) = info.http_error {
            anyhow::bail!("studiod serves no HTTP port: {reason}");
        }
        anyhow::bail!(
            "studiod serves no HTTP port because HTTP is off: set server.http in {} (for example 127.0.0.1:5000), or STUDIOML_HTTP, then restart it with `studio daemon stop`",
            client.paths.config_file().display()
        );
    };
    // The token goes in the fragment, which browsers never send to the
    // server or in a Referer; the dashboard moves it to local storage.
    let url = match &info.dashboard_token {
        Some(token) => format!("http://{address}/#token={token}"),
        None => format!("http://{address}/"),
    };
    println!("{url}");
    if args.open {
        open_browser(&url)?;
    }
    Ok(())
}

/// Starts `xdg-open URL` without waiting for the browser to close.
fn open_browser(url: &str) -> anyhow::Result<()> {
    let Ok(opener) = which::which("xdg-open") else {
        anyhow::bail!("cannot open {url}: xdg-open is not installed; open the address above in a browser (or install xdg-utils)");
    };
    std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", opener.display()))?;
    Ok(())
}
