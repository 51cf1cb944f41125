//! `studio runs list|show|stop|kill|tag`.

use crate::cli::{RunsArgs, RunsCommand};
use crate::client::{encode_segment, Client};
use crate::format;
use anyhow::{bail, Context};
use hyper::Method;
use std::collections::BTreeMap;
use std::time::Duration;
use studio_core::api::{Experiment, ListResponse, ProjectSummary, UserSummary};

pub async fn runs(client: &Client, args: RunsArgs) -> anyhow::Result<()> {
    match args.command {
        RunsCommand::List { which } => list(client, &which, args.short, args.json).await,
        RunsCommand::Show { key } => show(client, &key, args.json).await,
        RunsCommand::Stop { keys } => stop(client, &keys).await,
        RunsCommand::Kill { keys } => kill(client, &keys).await,
        RunsCommand::Tag { key, tags } => tag(client, &key, &tags, args.json).await,
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn experiment_path(key: &str) -> String {
    format!("/api/v1/experiments/{}", encode_segment(key))
}

/// What `runs list` shows.
#[derive(Debug)]
enum Selection {
    Mine,
    All,
    Users,
    Projects,
    User(String),
    Project(String),
}

fn parse_selection(which: &[String]) -> anyhow::Result<Selection> {
    let words: Vec<&str> = which.iter().map(String::as_str).collect();
    Ok(match words.as_slice() {
        [] => Selection::Mine,
        ["all"] => Selection::All,
        ["users"] => Selection::Users,
        ["projects"] => Selection::Projects,
        ["user", name] => Selection::User(name.to_string()),
        ["project", name] => Selection::Project(name.to_string()),
        ["user"] | ["project"] => bail!("`runs list {}` needs a name, as in `studio runs list {} NAME`", words[0], words[0]),
        _ => bail!(
            "invalid list selection {:?}: use all, users, projects, user NAME or project NAME (nothing lists your own experiments)",
            words.join(" ")
        ),
    })
}

async fn list(client: &Client, which: &[String], short: bool, json: bool) -> anyhow::Result<()> {
    let selection = parse_selection(which)?;
    let mut query = Vec::new();
    match &selection {
        Selection::Users => {
            let users: Vec<UserSummary> = client
                .json(Method::GET, "/api/v1/users", None::<&()>)
                .await?;
            return print_summaries(
                json,
                &users,
                users
                    .iter()
                    .map(|user| (user.name.as_str(), user.experiments, user.running)),
            );
        }
        Selection::Projects => {
            let projects: Vec<ProjectSummary> = client
                .json(Method::GET, "/api/v1/projects", None::<&()>)
                .await?;
            return print_summaries(
                json,
                &projects,
                projects
                    .iter()
                    .map(|project| (project.name.as_str(), project.experiments, project.running)),
            );
        }
        Selection::Mine => query.push(format!("owner={}", encode_segment(&current_user()))),
        Selection::User(name) => query.push(format!("owner={}", encode_segment(name))),
        Selection::Project(name) => {
            query.push(format!("project={}", encode_segment(name)));
            query.push("sort=metric".into());
        }
        Selection::All => {}
    }

    let experiments = fetch_all(client, &query).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&experiments)?);
    } else if short {
        for experiment in &experiments {
            println!("{}", experiment.key);
        }
    } else {
        print!("{}", format::table(&experiments, now()));
    }
    Ok(())
}

fn print_summaries<'a, T: serde::Serialize>(
    json: bool,
    items: &[T],
    rows: impl Iterator<Item = (&'a str, usize, usize)>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    let rows: Vec<_> = rows.collect();
    let width = rows.iter().map(|row| row.0.len()).max().unwrap_or(0).max(4);
    println!("{:<width$}  EXPERIMENTS  RUNNING", "NAME");
    for (name, experiments, running) in rows {
        println!("{name:<width$}  {experiments:<11}  {running}");
    }
    Ok(())
}

/// Reads every page of the listing.
async fn fetch_all(client: &Client, filters: &[String]) -> anyhow::Result<Vec<Experiment>> {
    let mut experiments = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut parameters = filters.to_vec();
        parameters.push("limit=10000".into());
        if let Some(cursor) = &cursor {
            parameters.push(format!("cursor={}", encode_segment(cursor)));
        }
        let path = format!("/api/v1/experiments?{}", parameters.join("&"));
        let page: ListResponse = client.json(Method::GET, &path, None::<&()>).await?;
        for value in page.experiments {
            experiments.push(
                serde_json::from_value(value).context("studiod sent an unreadable experiment")?,
            );
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(experiments),
        }
    }
}

async fn show(client: &Client, key: &str, json: bool) -> anyhow::Result<()> {
    let experiment: Experiment = client
        .json(Method::GET, &experiment_path(key), None::<&()>)
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&experiment)?);
    } else {
        print!("{}", format::record(&experiment, now()));
    }
    Ok(())
}

/// Asks every experiment to stop, then waits until all have ended.
async fn stop(client: &Client, keys: &[String]) -> anyhow::Result<()> {
    for key in keys {
        let _: Experiment = client
            .json(
                Method::POST,
                &format!("{}/stop", experiment_path(key)),
                None::<&()>,
            )
            .await?;
    }
    for key in keys {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let experiment: Experiment = client
                .json(Method::GET, &experiment_path(key), None::<&()>)
                .await?;
            if experiment.status.is_final() {
                println!("{key} {}", format::status_text(&experiment));
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("experiment {key} has not ended 120s after the stop request; check `studio runs show {key}`");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn kill(client: &Client, keys: &[String]) -> anyhow::Result<()> {
    for key in keys {
        client.call(Method::DELETE, &experiment_path(key)).await?;
        println!("{key} deleted");
    }
    Ok(())
}

async fn tag(client: &Client, key: &str, pairs: &[String], json: bool) -> anyhow::Result<()> {
    let mut tags = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("invalid tag {pair:?}: write NAME=VALUE, or NAME= to remove a tag");
        };
        tags.insert(name.to_string(), value.to_string());
    }
    let experiment: Experiment = client
        .json(
            Method::PUT,
            &format!("{}/tags", experiment_path(key)),
            Some(&tags),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&experiment.tags)?);
    } else {
        for (name, value) in &experiment.tags {
            println!("{name}={value}");
        }
    }
    Ok(())
}

/// Name of the user running the client, as studiod records owners.
pub fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn selections_parse() {
        assert!(matches!(parse_selection(&[]).unwrap(), Selection::Mine));
        assert!(matches!(
            parse_selection(&words(&["all"])).unwrap(),
            Selection::All
        ));
        assert!(
            matches!(parse_selection(&words(&["project", "p"])).unwrap(), Selection::Project(name) if name == "p")
        );
        let message = parse_selection(&words(&["everything"]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"everything\""), "{message}");
        let message = parse_selection(&words(&["user"])).unwrap_err().to_string();
        assert!(message.contains("needs a name"), "{message}");
    }
}
