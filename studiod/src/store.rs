//! The event log: an append-only sled tree of [`Envelope`]s.
//!
//! Appends go through one writer task. It takes every request waiting in its
//! channel, writes them as one sled batch, flushes once, and only then
//! replies to the callers, so an acknowledged event is on disk and many small
//! events share one flush. After a failed write or flush the log refuses
//! all further appends instead of going on with an unknown state.

use crate::events::{self, Envelope, Event, EventId, SCHEMA_VERSION};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most requests written in one batch.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the event log at {path}: {message}")]
    Open { path: String, message: String },
    #[error("the event log failed to write: {0}; studiod accepts no more changes, restart it")]
    Write(String),
    #[error("studiod is shutting down and accepts no more changes")]
    Closed,
}

/// Callback run with each batch after it is durable and before the callers
/// get their replies. It keeps projections and live streams current.
pub type CommitHook = Arc<dyn Fn(&[Envelope]) + Send + Sync>;

struct AppendRequest {
    items: Vec<(String, Event)>,
    reply: oneshot::Sender<Result<Vec<Envelope>, StoreError>>,
}

/// Handle to the event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    sender: mpsc::UnboundedSender<AppendRequest>,
    host_id: u64,
    length: Arc<AtomicU64>,
}

/// Events that `EventLog::open` read from disk.
pub struct Replay {
    pub envelopes: Vec<Envelope>,
    /// Entries that could not be decoded, for example written by a newer
    /// studiod; they are skipped and kept on disk.
    pub undecodable: usize,
}

impl EventLog {
    /// Opens (or creates) the log at `path`, reads every event in append
    /// order and starts the writer task on the current tokio runtime.
    pub fn open(path: &Path, hook: CommitHook) -> Result<(Self, Replay), StoreError> {
        let open_error = |error: sled::Error| StoreError::Open {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        let database = sled::open(path).map_err(open_error)?;
        let events = database.open_tree("events").map_err(open_error)?;
        let meta = database.open_tree("meta").map_err(open_error)?;
        let host_id = load_host_id(&meta).map_err(open_error)?;
        database.flush().map_err(open_error)?;

        let mut envelopes = Vec::new();
        let mut undecodable = 0;
        let mut next_seq = 0;
        for entry in events.iter() {
            let (key, value) = entry.map_err(open_error)?;
            next_seq = sequence_of(&key) + 1;
            match events::decode(&value) {
                Ok(envelope) => envelopes.push(envelope),
                Err(error) => {
                    undecodable += 1;
                    tracing::warn!(seq = sequence_of(&key), %error, "skipping an event this version cannot decode");
                }
            }
        }

        let length = Arc::new(AtomicU64::new(next_seq));
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            database,
            events,
            host_id,
            next_seq,
            length: length.clone(),
            failed: AtomicBool::new(false),
            hook,
        };
        tokio::spawn(writer.run(receiver));
        let log = Self {
            sender,
            host_id,
            length,
        };
        Ok((
            log,
            Replay {
                envelopes,
                undecodable,
            },
        ))
    }

    pub fn host_id(&self) -> u64 {
        self.host_id
    }

    /// Number of events in the log.
    pub fn len(&self) -> u64 {
        self.length.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one event and waits until it is durable.
    pub async fn append(&self, key: &str, event: Event) -> Result<Envelope, StoreError> {
        let mut written = self.append_all(vec![(key.to_string(), event)]).await?;
        written.pop().ok_or(StoreError::Closed)
    }

    /// Appends events atomically (all or none) and waits until they are
    /// durable.
    pub async fn append_all(
        &self,
        items: Vec<(String, Event)>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(AppendRequest { items, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

struct Writer {
    database: sled::Db,
    events: sled::Tree,
    host_id: u64,
    next_seq: u64,
    length: Arc<AtomicU64>,
    failed: AtomicBool,
    hook: CommitHook,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<AppendRequest>) {
        while let Some(first) = receiver.recv().await {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            self.write_batch(requests).await;
        }
        if let Err(error) = self.database.flush_async().await {
            tracing::error!(%error, "final flush of the event log failed");
        }
    }

    async fn write_batch(&mut self, requests: Vec<AppendRequest>) {
        if self.failed.load(Ordering::Relaxed) {
            for request in requests {
                let _ = request
                    .reply
                    .send(Err(StoreError::Write("an earlier write failed".into())));
            }
            return;
        }

        let time = events::now();
        let mut batch = sled::Batch::default();
        let mut written: Vec<Vec<Envelope>> = Vec::with_capacity(requests.len());
        let mut seq = self.next_seq;
        let mut encode_failure = None;
        for request in &requests {
            let mut envelopes = Vec::with_capacity(request.items.len());
            for (key, event) in &request.items {
                let envelope = Envelope {
                    version: SCHEMA_VERSION,
                    id: EventId {
                        host: self.host_id,
                        seq,
                    },
                    time,
                    key: key.clone(),
                    event: event.clone(),
                };
                match events::encode(&envelope) {
                    Ok(bytes) => batch.insert(&seq.to_be_bytes(), bytes),
                    Err(error) => encode_failure = Some(error.to_string()),
                }
                seq += 1;
                envelopes.push(envelope);
            }
            written.push(envelopes);
        }

        let result = match encode_failure {
            Some(message) => Err(message),
            None => self.commit(batch).await,
        };
        if let Err(message) = result {
            tracing::error!(error = %message, "event log write failed; refusing further appends");
            self.failed.store(true, Ordering::Relaxed);
            for request in requests {
                let _ = request.reply.send(Err(StoreError::Write(message.clone())));
            }
            return;
        }

        self.next_seq = seq;
        self.length.store(seq, Ordering::Relaxed);
        let all: Vec<Envelope> = written.iter().flatten().cloned().collect();
        (self.hook)(&all);
        for (request, envelopes) in requests.into_iter().zip(written) {
            let _ = request.reply.send(Ok(envelopes));
        }
    }

    async fn commit(&self, batch: sled::Batch) -> Result<(), String> {
        self.events
            .apply_batch(batch)
            .map_err(|error| error.to_string())?;
        self.database
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

fn sequence_of(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let length = key.len().min(8);
    bytes[8 - length..].copy_from_slice(&key[key.len() - length..]);
    u64::from_be_bytes(bytes)
}

/// Reads this host's id, making a random one on first use.
fn load_host_id(meta: &sled::Tree) -> Result<u64, sled::Error> {
    if let Some(bytes) = meta.get("host_id")? {
        if let Ok(array) = <[u8; 8]>::try_from(bytes.as_ref()) {
            return Ok(u64::from_be_bytes(array));
        }
    }
    let id = uuid::Uuid::new_v4().as_u64_pair().0;
    meta.insert("host_id", &id.to_be_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn tag(value: &str) -> Event {
        Event::TagsChanged {
            tags: [("n".to_string(), value.to_string())].into(),
        }
    }

    #[tokio::test]
    async fn appends_survive_reopen_in_order() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("db");
        let seen = Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let hook: CommitHook = Arc::new(move |batch| *counter.lock().unwrap() += batch.len());
        let host_id;
        {
            let (log, replay) = EventLog::open(&path, hook).unwrap();
            assert!(replay.envelopes.is_empty());
            host_id = log.host_id();
            let mut tasks = Vec::new();
            for index in 0..200 {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    log.append("k", tag(&index.to_string())).await.unwrap()
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(log.len(), 200);
        }
        assert_eq!(*seen.lock().unwrap(), 200);
        // The writer task owns the database until the runtime drops it;
        // give it a moment to finish before reopening.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let noop: CommitHook = Arc::new(|_| {});
        let (log, replay) = EventLog::open(&path, noop).unwrap();
        assert_eq!(log.host_id(), host_id);
        assert_eq!(replay.envelopes.len(), 200);
        let sequences: Vec<u64> = replay.envelopes.iter().map(|e| e.id.seq).collect();
        assert_eq!(sequences, (0..200).collect::<Vec<_>>());
        let next = log.append("k", tag("last")).await.unwrap();
        assert_eq!(next.id.seq, 200);
    }

    #[test]
    fn sequence_of_reads_big_endian() {
        assert_eq!(sequence_of(&5u64.to_be_bytes()), 5);
        assert_eq!(sequence_of(&u64::MAX.to_be_bytes()), u64::MAX);
    }
}
