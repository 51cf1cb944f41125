//! `studio daemon status|start|stop|run`.

use crate::cli::DaemonCommand;
use crate::client::Client;
use hyper::Method;
use std::time::Duration;
use studio_core::api::DaemonInfo;

pub async fn daemon(client: &Client, command: DaemonCommand) -> anyhow::Result<()> {
    match command {
        DaemonCommand::Status => status(client).await,
        DaemonCommand::Start { .. } => {
            if client.connect_existing().await.is_none() {
                client.start_daemon().await?;
            }
            status(client).await
        }
        DaemonCommand::Stop => stop(client).await,
        DaemonCommand::Run { .. } => unreachable!("handled before the runtime starts"),
    }
}

/// Exit code of `studio daemon status` when studiod is not running.
const NOT_RUNNING_EXIT_CODE: i32 = 3;

async fn status(client: &Client) -> anyhow::Result<()> {
    if client.connect_existing().await.is_none() {
        println!(
            "studiod is not running (socket {}); any studio command starts it",
            client.paths.socket.display()
        );
        // 3 is the status of a program that is not running in the LSB init
        // script conventions, which `systemctl status` follows too.
        std::process::exit(NOT_RUNNING_EXIT_CODE);
    }
    let info: DaemonInfo = client
        .json(Method::GET, "/api/v1/daemon", None::<&()>)
        .await?;
    let uptime = crate::format::local_time(info.started_at);
    println!(
        "studiod {} running, pid {}, since {uptime}",
        info.version, info.pid
    );
    println!("home:        {}", info.home.display());
    println!("socket:      {}", info.socket.display());
    let http = match (&info.http, &info.http_error) {
        (Some(address), _) => format!("http://{address}/"),
        (None, Some(error)) => format!("not served: {error}"),
        (None, None) => "off".into(),
    };
    println!("http:        {http}");
    println!(
        "experiments: {} ({} running)",
        info.experiments, info.running
    );
    println!("events:      {}", info.events);
    Ok(())
}

async fn stop(client: &Client) -> anyhow::Result<()> {
    if client.connect_existing().await.is_none() {
        println!("studiod is not running");
        return Ok(());
    }
    let info: DaemonInfo = client
        .json(Method::GET, "/api/v1/daemon", None::<&()>)
        .await?;
    client.call(Method::POST, "/api/v1/daemon/shutdown").await?;
    for _ in 0..200 {
        if studiod::process::start_time(info.pid).is_none() {
            println!(
                "studiod (pid {}) stopped; running experiments go on",
                info.pid
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!(
        "studiod (pid {}) did not stop within 5s; send it SIGTERM with `kill {}`",
        info.pid,
        info.pid
    )
}
