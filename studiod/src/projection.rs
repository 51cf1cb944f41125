//! Read models derived from the event log: experiments by key, and indexes
//! by project, owner, status and time. They are rebuilt by replaying the log
//! on start and updated by every committed batch; nothing else writes them.

use crate::events::{Envelope, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use studio_core::api::{Experiment, ListQuery, ListResponse, ProjectSummary, Status, UserSummary};

/// Largest page that `list` returns.
pub const MAX_PAGE: usize = 10_000;
const DEFAULT_PAGE: usize = 100;

#[derive(Default)]
pub struct Projection {
    experiments: HashMap<String, Experiment>,
    /// (time added in microseconds, key), for newest-first listing.
    by_time: BTreeSet<(i64, String)>,
    by_project: BTreeMap<String, BTreeSet<String>>,
    by_owner: BTreeMap<String, BTreeSet<String>>,
    by_status: BTreeMap<Status, BTreeSet<String>>,
    /// Which experiments reference each stored blob.
    pub blobs: crate::artifacts::index::BlobIndex,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("invalid sort {0:?}; use time, -time or metric")]
    Sort(String),
    #[error("invalid cursor {0:?}; pass back the next_cursor of the previous page unchanged")]
    Cursor(String),
    #[error("unknown field {0:?}; known fields: {1}")]
    Field(String, String),
    #[error("invalid limit 0; ask for 1 to 10000 experiments a page")]
    Limit,
}

impl Projection {
    pub fn get(&self, key: &str) -> Option<&Experiment> {
        self.experiments.get(key)
    }

    pub fn len(&self) -> usize {
        self.experiments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.experiments.is_empty()
    }

    pub fn count_with_status(&self, status: Status) -> usize {
        self.by_status.get(&status).map_or(0, BTreeSet::len)
    }

    /// Keys of experiments whose status is not final.
    pub fn unfinished(&self) -> Vec<String> {
        [Status::Waiting, Status::Queued, Status::Running]
            .iter()
            .filter_map(|status| self.by_status.get(status))
            .flatten()
            .cloned()
            .collect()
    }

    /// Applies one committed event.
    pub fn apply(&mut self, envelope: &Envelope) {
        let key = envelope.key.as_str();
        if let Event::ExperimentCreated(created) = &envelope.event {
            self.remove(key);
            let experiment = Experiment {
                key: key.to_string(),
                project: created.project.clone(),
                owner: created.owner.clone(),
                owner_uid: created.owner_uid,
                script: created.script.clone(),
                module: created.module,
                args: created.args.clone(),
                cwd: created.cwd.clone(),
                python: created.python.clone(),
                python_version: None,
                pip_freeze: Vec::new(),
                git: None,
                resources: created.resources.clone(),
                status: Status::Waiting,
                time_added: envelope.time,
                time_started: None,
                time_finished: None,
                host: created.host.clone(),
                pid: None,
                pid_start_time: None,
                exit_code: None,
                signal: None,
                reason: None,
                metric: created.metric.clone(),
                metric_value: None,
                max_duration: created.max_duration,
                lifetime: created.lifetime,
                tags: BTreeMap::new(),
                stopped_by: None,
                artifacts: BTreeMap::new(),
                hyperparameters: created.hyperparameters.clone(),
            };
            self.insert(experiment);
            return;
        }
        if let Event::ExperimentDeleted { .. } = &envelope.event {
            self.remove(key);
            return;
        }

        let Some(experiment) = self.experiments.get_mut(key) else {
            tracing::debug!(
                key,
                event = envelope.event.kind(),
                "event for an unknown experiment"
            );
            return;
        };
        let old_status = experiment.status;
        match &envelope.event {
            Event::ExperimentStarted(started) => {
                experiment.status = Status::Running;
                experiment.time_started = Some(envelope.time);
                experiment.pid = Some(started.pid);
                experiment.pid_start_time = started.pid_start_time;
            }
            Event::EnvironmentRecorded(environment) => {
                experiment.python_version = environment.python_version.clone();
                experiment.pip_freeze = environment.pip_freeze.clone();
            }
            Event::GitRecorded { git } => experiment.git = git.clone(),
            Event::TagsChanged { tags } => {
                for (name, value) in tags {
                    if value.is_empty() {
                        experiment.tags.remove(name);
                    } else {
                        experiment.tags.insert(name.clone(), value.clone());
                    }
                }
            }
            Event::StopRequested { by } => experiment.stopped_by = Some(by.clone()),
            Event::ExperimentFinished(finished) => {
                experiment.status = if finished.stopped {
                    Status::Stopped
                } else if finished.exit_code == Some(0) {
                    Status::Finished
                } else {
                    Status::Failed
                };
                experiment.exit_code = finished.exit_code;
                experiment.signal = finished.signal;
                experiment.reason = finished.reason.clone();
                experiment.time_finished = Some(finished.time);
            }
            Event::ExperimentInterrupted { reason } => {
                experiment.status = Status::Interrupted;
                experiment.reason = Some(reason.clone());
                experiment.time_finished = Some(envelope.time);
            }
            Event::ArtifactStored(stored) => {
                crate::artifacts::index::apply_stored(experiment, stored, envelope.time);
                self.blobs.add(key, &stored.digest);
            }
            Event::ExperimentCreated(_) | Event::ExperimentDeleted { .. } => {}
            Event::ExperimentQueued => experiment.status = Status::Queued,
            Event::MetricReported { value, .. } => {
                experiment.metric_value = Some(crate::metrics::fold_metric(
                    experiment.metric.as_deref(),
                    experiment.metric_value,
                    *value,
                ));
            }
        }
        let new_status = experiment.status;
        if new_status != old_status {
            if let Some(keys) = self.by_status.get_mut(&old_status) {
                keys.remove(key);
            }
            self.by_status
                .entry(new_status)
                .or_default()
                .insert(key.to_string());
        }
    }

    fn insert(&mut self, experiment: Experiment) {
        let key = experiment.key.clone();
        self.by_time
            .insert((micros(experiment.time_added), key.clone()));
        if let Some(project) = &experiment.project {
            self.by_project
                .entry(project.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_owner
            .entry(experiment.owner.clone())
            .or_default()
            .insert(key.clone());
        self.by_status
            .entry(experiment.status)
            .or_default()
            .insert(key.clone());
        self.experiments.insert(key, experiment);
    }

    fn remove(&mut self, key: &str) {
        let Some(experiment) = self.experiments.remove(key) else {
            return;
        };
        self.blobs.remove_experiment(key);
        self.by_time
            .remove(&(micros(experiment.time_added), key.to_string()));
        if let Some(project) = &experiment.project {
            remove_from_index(&mut self.by_project, project, key);
        }
        remove_from_index(&mut self.by_owner, &experiment.owner, key);
        remove_from_index(&mut self.by_status, &experiment.status, key);
    }

    /// Returns one page of experiments that match `query`.
    pub fn list(&self, query: &ListQuery) -> Result<ListResponse, QueryError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        if limit == 0 {
            return Err(QueryError::Limit);
        }
        let fields = parse_fields(query.fields.as_deref())?;
        let text = query.q.as_deref().map(str::to_lowercase);
        let matches = |experiment: &Experiment| {
            query
                .project
                .as_ref()
                .is_none_or(|project| experiment.project.as_ref() == Some(project))
                && query
                    .owner
                    .as_ref()
                    .is_none_or(|owner| &experiment.owner == owner)
                && query
                    .status
                    .is_none_or(|status| experiment.status == status)
                && text
                    .as_ref()
                    .is_none_or(|text| contains_text(experiment, text))
        };

        let sort = query.sort.as_deref().unwrap_or("time");
        let (page, total, next_cursor) = match sort {
            "time" | "-time" if is_unfiltered(query) => {
                self.page_all_by_time(sort == "time", query.cursor.as_deref(), limit)?
            }
            "time" | "-time" => {
                self.page_by_time(sort == "time", query.cursor.as_deref(), limit, &matches)?
            }
            "metric" => self.page_by_metric(query.cursor.as_deref(), limit, &matches)?,
            other => return Err(QueryError::Sort(other.to_string())),
        };
        let experiments = page
            .into_iter()
            .map(|experiment| select_fields(experiment, fields.as_deref()))
            .collect();
        Ok(ListResponse {
            experiments,
            total,
            next_cursor,
        })
    }

    /// Pages through all experiments by time without looking at the ones
    /// before the cursor or after the page: the cursor is a range bound of
    /// `by_time` and the total is its size, so a page costs
    /// O(log n + limit) however many experiments there are.
    fn page_all_by_time(
        &self,
        newest_first: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<&Experiment>, usize, Option<String>), QueryError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = cursor.map(parse_time_cursor).transpose()?;
        let ordered: Box<dyn Iterator<Item = &(i64, String)>> = match (after, newest_first) {
            (None, true) => Box::new(self.by_time.iter().rev()),
            (None, false) => Box::new(self.by_time.iter()),
            (Some(after), true) => Box::new(self.by_time.range((Unbounded, Excluded(after))).rev()),
            (Some(after), false) => Box::new(self.by_time.range((Excluded(after), Unbounded))),
        };
        let mut page = Vec::new();
        let mut next_cursor = None;
        for (_, key) in ordered {
            let Some(experiment) = self.experiments.get(key) else {
                continue;
            };
            if page.len() == limit {
                let last: &Experiment = page[page.len() - 1];
                next_cursor = Some(format!("t{}:{}", micros(last.time_added), last.key));
                break;
            }
            page.push(experiment);
        }
        Ok((page, self.by_time.len(), next_cursor))
    }

    fn page_by_time<'a>(
        &'a self,
        newest_first: bool,
        cursor: Option<&str>,
        limit: usize,
        matches: &dyn Fn(&Experiment) -> bool,
    ) -> Result<(Vec<&'a Experiment>, usize, Option<String>), QueryError> {
        let after = cursor.map(parse_time_cursor).transpose()?;
        let ordered: Box<dyn Iterator<Item = &(i64, String)>> = if newest_first {
            Box::new(self.by_time.iter().rev())
        } else {
            Box::new(self.by_time.iter())
        };
        let mut page = Vec::new();
        let mut total = 0;
        let mut next_cursor = None;
        for position in ordered {
            let Some(experiment) = self.experiments.get(&position.1) else {
                continue;
            };
            if !matches(experiment) {
                continue;
            }
            total += 1;
            let past_cursor = match &after {
                None => true,
                Some(after) if newest_first => position < after,
                Some(after) => position > after,
            };
            if !past_cursor {
                continue;
            }
            if page.len() < limit {
                page.push(experiment);
            } else if next_cursor.is_none() {
                let last = page[page.len() - 1];
                next_cursor = Some(format!("t{}:{}", micros(last.time_added), last.key));
            }
        }
        Ok((page, total, next_cursor))
    }

    fn page_by_metric<'a>(
        &'a self,
        cursor: Option<&str>,
        limit: usize,
        matches: &dyn Fn(&Experiment) -> bool,
    ) -> Result<(Vec<&'a Experiment>, usize, Option<String>), QueryError> {
        let offset = match cursor {
            None => 0,
            Some(text) => text
                .strip_prefix('o')
                .and_then(|number| number.parse::<usize>().ok())
                .ok_or_else(|| QueryError::Cursor(text.to_string()))?,
        };
        let mut selected: Vec<&Experiment> = self
            .by_time
            .iter()
            .rev()
            .filter_map(|(_, key)| self.experiments.get(key))
            .filter(|experiment| matches(experiment))
            .collect();
        selected.sort_by(|left, right| compare_metric(left, right));
        let total = selected.len();
        let end = (offset + limit).min(total);
        let page = selected
            .get(offset.min(total)..end)
            .unwrap_or_default()
            .to_vec();
        let next_cursor = (end < total).then(|| format!("o{end}"));
        Ok((page, total, next_cursor))
    }

    pub fn projects(&self) -> Vec<ProjectSummary> {
        self.by_project
            .iter()
            .map(|(name, keys)| {
                let members = keys.iter().filter_map(|key| self.experiments.get(key));
                let (mut running, mut last_added) = (0, 0.0f64);
                for experiment in members {
                    running += usize::from(experiment.status == Status::Running);
                    last_added = last_added.max(experiment.time_added);
                }
                ProjectSummary {
                    name: name.clone(),
                    experiments: keys.len(),
                    running,
                    last_added,
                }
            })
            .collect()
    }

    pub fn users(&self) -> Vec<UserSummary> {
        self.by_owner
            .iter()
            .map(|(name, keys)| UserSummary {
                name: name.clone(),
                experiments: keys.len(),
                running: keys
                    .iter()
                    .filter_map(|key| self.experiments.get(key))
                    .filter(|experiment| experiment.status == Status::Running)
                    .count(),
            })
            .collect()
    }
}

fn remove_from_index<K: Ord + Clone>(
    index: &mut BTreeMap<K, BTreeSet<String>>,
    name: &K,
    key: &str,
) {
    if let Some(keys) = index.get_mut(name) {
        keys.remove(key);
        if keys.is_empty() {
            index.remove(name);
        }
    }
}

fn is_unfiltered(query: &ListQuery) -> bool {
    query.project.is_none() && query.owner.is_none() && query.status.is_none() && query.q.is_none()
}

fn micros(seconds: f64) -> i64 {
    (seconds * 1e6) as i64
}

fn parse_time_cursor(text: &str) -> Result<(i64, String), QueryError> {
    let invalid = || QueryError::Cursor(text.to_string());
    let body = text.strip_prefix('t').ok_or_else(invalid)?;
    let (time, key) = body.split_once(':').ok_or_else(invalid)?;
    let time = time.parse().map_err(|_| invalid())?;
    Ok((time, key.to_string()))
}

fn contains_text(experiment: &Experiment, text: &str) -> bool {
    let fields = [
        Some(experiment.key.as_str()),
        experiment.project.as_deref(),
        Some(experiment.script.as_str()),
        Some(experiment.owner.as_str()),
    ];
    fields
        .into_iter()
        .flatten()
        .chain(experiment.args.iter().map(String::as_str))
        .any(|field| field.to_lowercase().contains(text))
}

/// Orders experiments best metric first: ascending for `name:min`,
/// descending otherwise; experiments without a value come last, newest
/// first among themselves (the input order).
fn compare_metric(left: &Experiment, right: &Experiment) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (left.metric_value, right.metric_value) {
        (Some(a), Some(b)) => {
            let minimise = left
                .metric
                .as_deref()
                .is_some_and(|metric| metric.ends_with(":min"));
            let ordering = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if minimise {
                ordering
            } else {
                ordering.reverse()
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

const FIELD_NAMES: &[&str] = &[
    "key",
    "project",
    "owner",
    "owner_uid",
    "script",
    "module",
    "args",
    "cwd",
    "python",
    "python_version",
    "pip_freeze",
    "git",
    "resources",
    "status",
    "time_added",
    "time_started",
    "time_finished",
    "host",
    "pid",
    "pid_start_time",
    "exit_code",
    "signal",
    "reason",
    "metric",
    "metric_value",
    "max_duration",
    "lifetime",
    "tags",
    "stopped_by",
    "hyperparameters",
];

fn parse_fields(fields: Option<&str>) -> Result<Option<Vec<String>>, QueryError> {
    let Some(fields) = fields else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for name in fields
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        if !FIELD_NAMES.contains(&name) {
            return Err(QueryError::Field(name.to_string(), FIELD_NAMES.join(", ")));
        }
        names.push(name.to_string());
    }
    Ok(Some(names))
}

fn select_fields(experiment: &Experiment, fields: Option<&[String]>) -> serde_json::Value {
    let value = serde_json::to_value(experiment).unwrap_or(serde_json::Value::Null);
    let Some(fields) = fields else {
        return value;
    };
    let serde_json::Value::Object(mut object) = value else {
        return value;
    };
    object.retain(|name, _| fields.iter().any(|field| field == name));
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Created, EventId, Finished, SCHEMA_VERSION};

    fn envelope(seq: u64, time: f64, key: &str, event: Event) -> Envelope {
        Envelope {
            version: SCHEMA_VERSION,
            id: EventId { host: 1, seq },
            time,
            key: key.into(),
            event,
        }
    }

    fn created(project: &str, owner: &str) -> Event {
        Event::ExperimentCreated(Box::new(Created {
            project: Some(project.into()),
            owner: owner.into(),
            owner_uid: None,
            script: "train.py".into(),
            module: false,
            args: vec![],
            cwd: "/".into(),
            python: "python3".into(),
            host: "h".into(),
            resources: Default::default(),
            max_duration: None,
            lifetime: None,
            metric: Some("loss:min".into()),
            hyperparameters: BTreeMap::new(),
        }))
    }

    fn sample() -> Projection {
        let mut projection = Projection::default();
        for index in 0..25u64 {
            let project = if index % 2 == 0 { "even" } else { "odd" };
            let key = format!("exp{index:02}");
            projection.apply(&envelope(
                index * 3,
                index as f64,
                &key,
                created(project, "ada"),
            ));
            let finished = Finished {
                exit_code: Some(i32::from(index % 5 == 0)),
                signal: None,
                stopped: false,
                reason: None,
                time: index as f64 + 0.5,
            };
            projection.apply(&envelope(
                index * 3 + 1,
                index as f64,
                &key,
                Event::ExperimentFinished(finished),
            ));
        }
        projection
    }

    #[test]
    fn statuses_follow_exit_codes() {
        let projection = sample();
        assert_eq!(projection.get("exp00").unwrap().status, Status::Failed);
        assert_eq!(projection.get("exp01").unwrap().status, Status::Finished);
        assert_eq!(projection.count_with_status(Status::Failed), 5);
        assert_eq!(projection.count_with_status(Status::Finished), 20);
    }

    #[test]
    fn pages_cover_everything_once() {
        let projection = sample();
        let mut query = ListQuery {
            limit: Some(10),
            ..Default::default()
        };
        let mut keys = Vec::new();
        loop {
            let page = projection.list(&query).unwrap();
            assert_eq!(page.total, 25);
            keys.extend(
                page.experiments
                    .iter()
                    .map(|e| e["key"].as_str().unwrap().to_string()),
            );
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        let expected: Vec<String> = (0..25).rev().map(|i| format!("exp{i:02}")).collect();
        assert_eq!(keys, expected);
    }

    /// Collects every page's keys and totals for `query`.
    fn all_pages(projection: &Projection, mut query: ListQuery) -> Vec<(Vec<String>, usize)> {
        let mut pages = Vec::new();
        loop {
            let page = projection.list(&query).unwrap();
            let keys = page
                .experiments
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_string())
                .collect();
            pages.push((keys, page.total));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return pages,
            }
        }
    }

    #[test]
    fn unfiltered_pages_match_filtered_scan() {
        let projection = sample();
        for sort in ["time", "-time"] {
            let unfiltered = ListQuery {
                limit: Some(7),
                sort: Some(sort.into()),
                ..Default::default()
            };
            let matching_all = ListQuery {
                q: Some("exp".into()),
                ..unfiltered.clone()
            };
            let fast = all_pages(&projection, unfiltered);
            assert_eq!(fast.len(), 4, "{sort}");
            assert_eq!(fast, all_pages(&projection, matching_all), "{sort}");
        }
    }

    #[test]
    fn filters_and_fields() {
        let projection = sample();
        let query = ListQuery {
            project: Some("odd".into()),
            status: Some(Status::Finished),
            fields: Some("key,status".into()),
            ..Default::default()
        };
        let page = projection.list(&query).unwrap();
        assert_eq!(page.total, 10);
        let first = page.experiments[0].as_object().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first["key"], "exp23");
    }

    #[test]
    fn bad_queries_are_rejected() {
        let projection = sample();
        let bad_sort = ListQuery {
            sort: Some("size".into()),
            ..Default::default()
        };
        assert_eq!(
            projection.list(&bad_sort).unwrap_err(),
            QueryError::Sort("size".into())
        );
        let bad_cursor = ListQuery {
            cursor: Some("zz".into()),
            ..Default::default()
        };
        assert!(matches!(
            projection.list(&bad_cursor),
            Err(QueryError::Cursor(_))
        ));
        let bad_field = ListQuery {
            fields: Some("key,colour".into()),
            ..Default::default()
        };
        assert!(
            matches!(projection.list(&bad_field), Err(QueryError::Field(name, _)) if name == "colour")
        );
        let zero = ListQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert_eq!(projection.list(&zero).unwrap_err(), QueryError::Limit);
    }

    #[test]
    fn delete_removes_from_every_index() {
        let mut projection = sample();
        projection.apply(&envelope(
            999,
            99.0,
            "exp03",
            Event::ExperimentDeleted { by: "ada".into() },
        ));
        assert!(projection.get("exp03").is_none());
        assert_eq!(projection.len(), 24);
        let odd = projection
            .projects()
            .into_iter()
            .find(|p| p.name == "odd")
            .unwrap();
        assert_eq!(odd.experiments, 11);
        assert_eq!(projection.users()[0].experiments, 24);
    }

    #[test]
    fn metric_sort_follows_direction_and_keeps_zero() {
        for (metric, expected) in [
            ("loss:min", ["zero", "low", "high", "none"]),
            ("loss:max", ["high", "low", "zero", "none"]),
        ] {
            let mut projection = Projection::default();
            let reported = [
                ("high", Some(0.5)),
                ("zero", Some(0.0)),
                ("low", Some(0.2)),
                ("none", None),
            ];
            for (seq, (key, value)) in reported.iter().enumerate() {
                let mut event = created("p", "ada");
                if let Event::ExperimentCreated(created) = &mut event {
                    created.metric = Some(metric.into());
                }
                projection.apply(&envelope(seq as u64 * 2, seq as f64, key, event));
                if let Some(value) = value {
                    // A worse value after the best must not replace it.
                    let worse = if metric.ends_with(":min") {
                        value + 1.0
                    } else {
                        value - 1.0
                    };
                    for (offset, reported) in [(0, *value), (1, worse)] {
                        projection.apply(&envelope(
                            100 + seq as u64 * 2 + offset,
                            seq as f64,
                            key,
                            Event::MetricReported {
                                value: reported,
                                step: None,
                            },
                        ));
                    }
                }
            }
            let query = ListQuery {
                sort: Some("metric".into()),
                ..Default::default()
            };
            let keys: Vec<String> = projection
                .list(&query)
                .unwrap()
                .experiments
                .iter()
                .map(|experiment| experiment["key"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(keys, expected, "{metric}");
        }
    }
}
