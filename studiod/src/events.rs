//! Events: the only record of what happened to an experiment.
//!
//! An event is never changed once written. Each one is stored as an
//! [`Envelope`] encoded with rmp-serde using field names, so fields added in
//! later versions (with `#[serde(default)]`) leave old logs readable.
//! `SCHEMA_VERSION` is raised when a change needs a migration on replay.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use studio_core::api::GitInfo;
use studio_core::config::Resources;

/// Version written into every new envelope.
pub const SCHEMA_VERSION: u16 = 1;

/// Identifier of an event: the host that wrote it and its sequence number
/// on that host. Events from several hosts merge by this id without
/// conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub host: u64,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:016x}-{}", self.host, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    pub id: EventId,
    /// Seconds since the Unix epoch when the event was appended.
    pub time: f64,
    /// Key of the experiment the event belongs to.
    pub key: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    ExperimentCreated(Box<Created>),
    ExperimentStarted(Started),
    EnvironmentRecorded(EnvironmentRecorded),
    GitRecorded {
        git: Option<GitInfo>,
    },
    TagsChanged {
        tags: BTreeMap<String, String>,
    },
    StopRequested {
        by: String,
    },
    ExperimentFinished(Finished),
    ExperimentInterrupted {
        reason: String,
    },
    ExperimentDeleted {
        by: String,
    },
    ArtifactStored(ArtifactStored),
    /// Put on the local queue; started when a worker slot is free.
    ExperimentQueued,
    /// A new value of the experiment's `--metric`, from its output or its
    /// TensorBoard files.
    MetricReported {
        value: f64,
        step: Option<i64>,
    },
}

impl Event {
    /// Short name used in logs and in the event stream.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ExperimentCreated(_) => "ExperimentCreated",
            Event::ExperimentStarted(_) => "ExperimentStarted",
            Event::EnvironmentRecorded(_) => "EnvironmentRecorded",
            Event::GitRecorded { .. } => "GitRecorded",
            Event::TagsChanged { .. } => "TagsChanged",
            Event::StopRequested { .. } => "StopRequested",
            Event::ExperimentFinished(_) => "ExperimentFinished",
            Event::ExperimentInterrupted { .. } => "ExperimentInterrupted",
            Event::ExperimentDeleted { .. } => "ExperimentDeleted",
            Event::ArtifactStored(_) => "ArtifactStored",
            Event::ExperimentQueued => "ExperimentQueued",
            Event::MetricReported { .. } => "MetricReported",
        }
    }
}

/// What the experiment is, as submitted. Holds no environment variables:
/// those stay in the experiment's private spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub project: Option<String>,
    pub owner: String,
    pub owner_uid: Option<u32>,
    pub script: String,
    #[serde(default)]
    pub module: bool,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub python: PathBuf,
    pub host: String,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub max_duration: Option<f64>,
    #[serde(default)]
    pub lifetime: Option<f64>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
    pub pid_start_time: Option<u64>,
    pub supervisor_pid: u32,
    pub supervisor_start_time: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRecorded {
    pub python_version: Option<String>,
    pub pip_freeze: Vec<String>,
}

/// How the experiment's process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// True when Studio ended it (stop request, Ctrl-C, `--max-duration`).
    pub stopped: bool,
    pub reason: Option<String>,
    /// Seconds since the epoch when the process ended; may be earlier than
    /// the envelope's time when the daemon learnt of it after a restart.
    pub time: f64,
}

/// One version of an artifact, packed and stored under its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactStored {
    pub tag: String,
    /// SHA-256 of the packed tar.gz, in hex.
    pub digest: String,
    pub size: u64,
    pub files: u64,
    pub mutable: bool,
    /// Name of the file when the artifact is one file.
    #[serde(default)]
    pub file: Option<String>,
}

/// Encodes an envelope for the log.
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(envelope)
}

/// Decodes an envelope read from the log.
pub fn decode(bytes: &[u8]) -> Result<Envelope, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// Current time in seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_events() -> Vec<Event> {
        vec![
            Event::ExperimentCreated(Box::new(Created {
                project: Some("p".into()),
                owner: "ada".into(),
                owner_uid: Some(1000),
                script: "train.py".into(),
                module: false,
                args: vec!["--lr".into(), "0.1".into()],
                cwd: "/home/ada".into(),
                python: "/usr/bin/python3".into(),
                host: "box".into(),
                resources: Resources::default(),
                max_duration: Some(60.0),
                lifetime: None,
                metric: Some("loss:min".into()),
                hyperparameters: [("lr".to_string(), "0.1".to_string())].into(),
            })),
            Event::ExperimentStarted(Started {
                pid: 42,
                pid_start_time: Some(7),
                supervisor_pid: 41,
                supervisor_start_time: Some(6),
            }),
            Event::EnvironmentRecorded(EnvironmentRecorded {
                python_version: Some("3.11.7".into()),
                pip_freeze: vec!["numpy==2.0.0".into()],
            }),
            Event::GitRecorded { git: None },
            Event::TagsChanged {
                tags: [("a".to_string(), "b".to_string())].into(),
            },
            Event::StopRequested { by: "ada".into() },
            Event::ExperimentFinished(Finished {
                exit_code: None,
                signal: Some(15),
                stopped: true,
                reason: Some("stopped by ada".into()),
                time: 2.5,
            }),
            Event::ExperimentInterrupted {
                reason: "gone".into(),
            },
            Event::ExperimentDeleted { by: "ada".into() },
            Event::ArtifactStored(ArtifactStored {
                tag: "weights".into(),
                digest: "ab".repeat(32),
                size: 10,
                files: 2,
                mutable: true,
                file: None,
            }),
            Event::ExperimentQueued,
            Event::MetricReported {
                value: 0.0,
                step: Some(3),
            },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for (seq, event) in sample_events().into_iter().enumerate() {
            let envelope = Envelope {
                version: SCHEMA_VERSION,
                id: EventId {
                    host: 0xabc,
                    seq: seq as u64,
                },
                time: 1.5,
                key: "k".into(),
                event,
            };
            let bytes = encode(&envelope).unwrap();
            assert_eq!(decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn event_id_displays_host_and_sequence() {
        let id = EventId { host: 255, seq: 9 };
        assert_eq!(id.to_string(), "00000000000000ff-9");
    }
}
