//! `studio ui`: where the dashboard is.

use crate::client::Client;
use hyper::Method;
use studio_core::api::DaemonInfo;

pub async fn ui(client: &Client) -> anyhow::Result<()> {
    let info: DaemonInfo = client
        .json(Method::GET, "/api/v1/daemon", None::<&()>)
        .await?;
    match info.http {
        Some(address) => {
            println!("http://{address}/");
            Ok(())
        }
        None => anyhow::bail!(
            "studiod serves no HTTP port: set server.http in {} (for example 127.0.0.1:5000) and restart it with `studio daemon stop`",
            client.paths.config_file().display()
        ),
    }
}
