//! `GET /api/v1/experiments/{key}/output` with `Accept: text/event-stream`:
//! the experiment's output as Server-Sent Events, for the dashboard's live
//! tail. The raw byte stream (`follow=true`) that the CLI reads is separate.
//!
//! Each `output` event carries `{"text": ...}` and, as its id, the byte
//! offset just after that text, so a reconnecting `EventSource` resumes
//! where it stopped by sending `Last-Event-ID`. A final `end` event carries
//! `{"status": ...}` once the experiment has ended and all its output was
//! sent.

use crate::daemon::Daemon;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::broadcast::error::RecvError;

/// Maximum bytes read for one event.
const CHUNK: usize = 64 * 1024;

/// Maximum wait between two reads of the output file when no event arrives
/// (the supervisor writes output without events).
const POLL: Duration = Duration::from_millis(200);

/// True when the client asked for Server-Sent Events.
pub fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

/// Starts the event stream at `offset`, or at the `Last-Event-ID` of a
/// reconnecting client when that is a byte offset.
pub fn response(daemon: Arc<Daemon>, key: String, offset: u64, headers: &HeaderMap) -> Response {
    let offset = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(offset);
    let state = Tail {
        path: daemon.output_path(&key),
        events: daemon.events.subscribe(),
        daemon,
        key,
        file: None,
        offset,
        pending: Vec::new(),
        ended: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let event = state.next_event().await?;
        Some((Ok::<_, Infallible>(event), state))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

struct Tail {
    daemon: Arc<Daemon>,
    key: String,
    path: std::path::PathBuf,
    events: tokio::sync::broadcast::Receiver<Arc<crate::events::Envelope>>,
    file: Option<tokio::fs::File>,
    /// Offset of the next byte to read from the file.
    offset: u64,
    /// Bytes read but not sent because they end inside a UTF-8 character.
    pending: Vec<u8>,
    /// True once the experiment had ended before the last read.
    ended: bool,
    /// True after the `end` event.
    done: bool,
}

impl Tail {
    async fn next_event(&mut self) -> Option<SseEvent> {
        if self.done {
            return None;
        }
        loop {
            match self.read_text().await {
                Ok(Some(text)) => {
                    let sent_offset = self.offset - self.pending.len() as u64;
                    let event = SseEvent::default()
                        .event("output")
                        .id(sent_offset.to_string())
                        .json_data(serde_json::json!({ "text": text }));
                    return Some(
                        event.unwrap_or_else(|_| SseEvent::default().comment("unencodable output")),
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(key = %self.key, %error, "cannot read the output for the event stream");
                    self.done = true;
                    return Some(
                        SseEvent::default()
                            .event("error")
                            .data(format!("cannot read {}: {error}", self.path.display())),
                    );
                }
            }
            if self.ended {
                self.done = true;
                let status = self.daemon.experiment(&self.key).map_or_else(
                    || "deleted".to_string(),
                    |experiment| experiment.status.to_string(),
                );
                let event = SseEvent::default()
                    .event("end")
                    .json_data(serde_json::json!({ "status": status }));
                return Some(event.unwrap_or_else(|_| SseEvent::default().event("end")));
            }
            let finished = self
                .daemon
                .status(&self.key)
                .is_none_or(|status| status.is_final());
            if finished {
                // One more read: the last bytes may have been written after
                // the read above and before the process ended.
                self.ended = true;
                continue;
            }
            self.wait_for_change().await;
        }
    }

    /// Reads the next chunk and returns the complete UTF-8 text in it, or
    /// `None` when nothing new was written. Invalid bytes become U+FFFD.
    async fn read_text(&mut self) -> std::io::Result<Option<String>> {
        if self.file.is_none() {
            match tokio::fs::File::open(&self.path).await {
                Ok(mut file) => {
                    file.seek(std::io::SeekFrom::Start(self.offset)).await?;
                    self.file = Some(file);
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        let mut buffer = vec![0u8; CHUNK];
        let count = file.read(&mut buffer).await?;
        if count == 0 {
            if self.ended && !self.pending.is_empty() {
                let rest = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Ok(Some(rest));
            }
            return Ok(None);
        }
        self.offset += count as u64;
        self.pending.extend_from_slice(&buffer[..count]);
        Ok(Some(take_complete_text(&mut self.pending)))
    }

    async fn wait_for_change(&mut self) {
        let key = self.key.clone();
        let events = &mut self.events;
        let event_for_key = async {
            loop {
                match events.recv().await {
                    Ok(envelope) if envelope.key == key => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = event_for_key => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Removes and returns the longest prefix of `bytes` that does not end
/// inside a UTF-8 character; invalid sequences become U+FFFD.
fn take_complete_text(bytes: &mut Vec<u8>) -> String {
    let rest = bytes.split_off(complete_prefix_length(bytes));
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = rest;
    text
}

/// Length of `bytes` without a character cut off at the end. A UTF-8
/// character is at most 4 bytes, so its lead byte is at most 3 bytes back.
fn complete_prefix_length(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        let is_continuation = bytes[start] & 0xC0 == 0x80;
        if !is_continuation {
            return match std::str::from_utf8(&bytes[start..]) {
                Err(error) if error.error_len().is_none() => start,
                _ => bytes.len(),
            };
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::take_complete_text;

    #[test]
    fn split_character_is_kept_back() {
        let euro = "€".as_bytes();
        let mut bytes = b"ab".to_vec();
        bytes.extend_from_slice(&euro[..2]);
        assert_eq!(take_complete_text(&mut bytes), "ab");
        assert_eq!(bytes, &euro[..2]);
        bytes.push(euro[2]);
        assert_eq!(take_complete_text(&mut bytes), "€");
        assert!(bytes.is_empty());
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut bytes = b"a\xffb".to_vec();
        assert_eq!(take_complete_text(&mut bytes), "a\u{fffd}b");
        assert!(bytes.is_empty());
    }
}
