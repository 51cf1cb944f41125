//! Types and rules shared by the daemon (`studiod`) and the client (`studioctl`).
//!
//! Everything that crosses the Unix socket or the HTTP port is defined here
//! once, so the two binaries cannot disagree on a field.

pub mod api;
pub mod config;
pub mod duration;
pub mod hyperparam;
pub mod paths;

/// Version of this build, sent in the `x-studio-version` header and shown by
/// `studio daemon status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
