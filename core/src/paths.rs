//! Where Studio keeps its files on a host.
//!
//! `STUDIOML_HOME` (default `~/.studioml`) holds the event log, artifacts and
//! logs. The daemon's socket is `STUDIOML_SOCKET` when set, else
//! `$XDG_RUNTIME_DIR/studio/studiod.sock` for the default home, else
//! `<home>/studiod.sock`. A home chosen with `STUDIOML_HOME` always gets its
//! own socket inside it, so two homes never share a daemon.

use std::path::{Path, PathBuf};

/// The directories and files of one Studio home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudioPaths {
    pub home: PathBuf,
    pub socket: PathBuf,
}

impl StudioPaths {
    /// Resolves the paths from the process environment.
    pub fn from_env() -> Result<Self, PathError> {
        Self::resolve(|name| std::env::var_os(name).filter(|value| !value.is_empty()))
    }

    /// Resolves the paths with `lookup` standing in for the environment, so
    /// tests can check every rule without touching the process's variables.
    pub fn resolve(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, PathError> {
        let explicit_home = lookup("STUDIOML_HOME").map(PathBuf::from);
        let home = match &explicit_home {
            Some(home) => home.clone(),
            None => {
                let user_home = lookup("HOME").ok_or(PathError::NoHome)?;
                PathBuf::from(user_home).join(".studioml")
            }
        };
        let socket = if let Some(socket) = lookup("STUDIOML_SOCKET") {
            PathBuf::from(socket)
        } else if explicit_home.is_some() {
            home.join("studiod.sock")
        } else if let Some(runtime) = lookup("XDG_RUNTIME_DIR") {
            PathBuf::from(runtime).join("studio").join("studiod.sock")
        } else {
            home.join("studiod.sock")
        };
        Ok(Self { home, socket })
    }

    pub fn with_home(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            socket: home.join("studiod.sock"),
        }
    }

    /// Returns the sled database that contains the event log.
    pub fn database(&self) -> PathBuf {
        self.home.join("db")
    }

    /// Held with an exclusive lock by the running daemon.
    pub fn lock_file(&self) -> PathBuf {
        self.home.join("studiod.lock")
    }

    /// Log of a daemon started in the background by the client.
    pub fn daemon_log(&self) -> PathBuf {
        self.home.join("logs").join("studiod.log")
    }

    pub fn config_file(&self) -> PathBuf {
        self.home.join("config.yaml")
    }

    /// Directory of one experiment: its output, mutable artifacts and the
    /// supervisor's files.
    pub fn experiment_dir(&self, key: &str) -> PathBuf {
        self.home.join("experiments").join(key)
    }

    /// Files shared by experiments, downloaded or reused once.
    pub fn blob_cache(&self) -> PathBuf {
        self.home.join("blobcache")
    }

    /// The Python client package that experiments find on `PYTHONPATH`.
    pub fn python_client(&self) -> PathBuf {
        self.home.join("python").join(crate::VERSION)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("neither STUDIOML_HOME nor HOME is set: set one of them to the directory where Studio should keep its files")]
    NoHome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(pairs: &[(&str, &str)]) -> StudioPaths {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        StudioPaths::resolve(|name| map.get(name).map(Into::into)).unwrap()
    }

    #[test]
    fn default_home_uses_runtime_dir() {
        let paths = resolve(&[("HOME", "/home/ada"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(paths.home, PathBuf::from("/home/ada/.studioml"));
        assert_eq!(
            paths.socket,
            PathBuf::from("/run/user/1000/studio/studiod.sock")
        );
    }

    #[test]
    fn default_home_without_runtime_dir() {
        let paths = resolve(&[("HOME", "/home/ada")]);
        assert_eq!(
            paths.socket,
            PathBuf::from("/home/ada/.studioml/studiod.sock")
        );
    }

    #[test]
    fn explicit_home_gets_own_socket() {
        let paths = resolve(&[
            ("HOME", "/home/ada"),
            ("STUDIOML_HOME", "/data/studio"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(paths.home, PathBuf::from("/data/studio"));
        assert_eq!(paths.socket, PathBuf::from("/data/studio/studiod.sock"));
    }

    #[test]
    fn explicit_socket_wins() {
        let paths = resolve(&[
            ("HOME", "/home/ada"),
            ("STUDIOML_SOCKET", "/run/studiod.sock"),
        ]);
        assert_eq!(paths.socket, PathBuf::from("/run/studiod.sock"));
    }

    #[test]
    fn missing_home_is_an_error() {
        let error = StudioPaths::resolve(|_| None).unwrap_err();
        assert!(error.to_string().contains("HOME"));
    }
}
