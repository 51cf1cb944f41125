//! The YAML config file (`--config`, else `~/.studioml/config.yaml`, else
//! the embedded defaults in `config/default.yaml`).
//!
//! Old StudioML files keep loading: keys Studio does not use yet are reported
//! as warnings, never as errors, and `$VAR` / `${VAR}` in string values are
//! replaced from the environment (unknown variables stay as written, as the
//! original did). A value of the wrong type is an error that names the key.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The documented default config, shipped in the repository and compiled in.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../config/default.yaml");

/// Top-level keys that Studio reads.
const SUPPORTED_KEYS: &[&str] = &[
    "database",
    "storage",
    "queue",
    "saveMetricsFrequency",
    "saveWorkspaceFrequency",
    "verbose",
    "resources_needed",
    "env",
    "experimentLifetime",
    "server",
    "stop_grace",
    "sleep_time",
    "optimizer",
    "cloud",
];

/// Top-level keys of StudioML 0.0.x files that Studio accepts and ignores.
const LEGACY_KEYS: &[&str] = &[
    "worker_timeout",
    "public_key_path",
    "signing_key_path",
    "pip",
    "api_key",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    /// Default queue of `studio run`; empty means run here, now.
    pub queue: Option<String>,
    /// Seconds between samples of CPU, memory and GPU use.
    #[serde(rename = "saveMetricsFrequency", deserialize_with = "seconds")]
    pub save_metrics_frequency: f64,
    /// Seconds between captures of mutable artifacts.
    #[serde(rename = "saveWorkspaceFrequency", deserialize_with = "seconds")]
    pub save_workspace_frequency: f64,
    pub verbose: Option<serde_yaml_ng::Value>,
    pub resources_needed: Resources,
    /// Variables exported to every experiment.
    pub env: BTreeMap<String, String>,
    /// Seconds a queued experiment may wait before it is skipped.
    #[serde(rename = "experimentLifetime", deserialize_with = "optional_seconds")]
    pub experiment_lifetime: Option<f64>,
    pub server: ServerConfig,
    /// Seconds between SIGTERM and SIGKILL when an experiment is stopped.
    #[serde(deserialize_with = "seconds")]
    pub stop_grace: f64,
    /// Seconds between polls of queues and back-offs.
    pub sleep_time: f64,
    pub optimizer: serde_yaml_ng::Value,
    pub cloud: serde_yaml_ng::Value,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            queue: None,
            save_metrics_frequency: 60.0,
            save_workspace_frequency: 60.0,
            verbose: None,
            resources_needed: Resources {
                cpus: Some(2),
                gpus: Some(0),
                ram: Some("3g".into()),
                hdd: Some("60g".into()),
                ..Resources::default()
            },
            env: BTreeMap::new(),
            experiment_lifetime: None,
            server: ServerConfig::default(),
            stop_grace: 10.0,
            sleep_time: 1.0,
            optimizer: serde_yaml_ng::Value::Null,
            cloud: serde_yaml_ng::Value::Null,
        }
    }
}

/// `database:` of StudioML files. Studio keeps its records in the local
/// event log whatever the type says; other types are reported at load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub guest: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            guest: None,
            other: BTreeMap::new(),
        }
    }
}

/// `storage:`, where artifacts are kept: `local` (the default), `s3` or
/// `gcs` (`gcloud` in StudioML files means `gcs`). Credentials are never
/// read from here: S3 uses the standard AWS chain (environment, `profile`),
/// GCS uses `GOOGLE_APPLICATION_CREDENTIALS` or Google's default chain.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub bucket: Option<String>,
    /// URL of an S3-compatible or GCS-compatible server; the service's own
    /// endpoint when absent.
    pub endpoint: Option<String>,
    /// S3 region; the AWS chain's region (`AWS_REGION`, profile) when absent.
    pub region: Option<String>,
    /// Named profile of `~/.aws/config` for S3 credentials and region.
    pub profile: Option<String>,
    /// Google Cloud project, billed for GCS requests.
    pub project: Option<String>,
    /// Tries of each upload or download of a cloud store before it fails,
    /// the first included (default 6, over about a minute).
    pub attempts: Option<u32>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            bucket: None,
            endpoint: None,
            region: None,
            profile: None,
            project: None,
            attempts: None,
            other: BTreeMap::new(),
        }
    }
}

/// Most tries of a cloud store operation that `storage.attempts` may ask
/// for; more would leave a failed upload unreported for hours.
pub const MAX_STORE_ATTEMPTS: u32 = 20;

/// The artifact store backend that `storage: type:` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Local,
    S3,
    Gcs,
}

impl StorageConfig {
    /// Returns the backend of `type`, with the error to show for an
    /// unknown type or a cloud type without a bucket.
    pub fn backend(&self) -> Result<StorageKind, String> {
        let kind = match self.kind.as_str() {
            "local" | "" => return Ok(StorageKind::Local),
            "s3" => StorageKind::S3,
            "gcs" | "gcloud" => StorageKind::Gcs,
            other => {
                return Err(format!(
                    "storage type '{other}' is not supported: use local, s3 or gcs"
                ))
            }
        };
        match self.bucket.as_deref() {
            Some(bucket) if !bucket.trim().is_empty() => {
                validate_bucket_name(bucket, kind)?;
                Ok(kind)
            }
            _ => Err(format!(
                "storage type '{}' needs a bucket: set storage.bucket",
                self.kind
            )),
        }
    }
}

/// Checks a bucket name against the naming rules of S3 and GCS: 3 to 63
/// lowercase letters, digits, `-` and `.` (and `_` on GCS), starting and
/// ending with a letter or digit. GCS allows up to 222 characters when the
/// name contains dots; Studio keeps to 63 for both.
fn validate_bucket_name(bucket: &str, kind: StorageKind) -> Result<(), String> {
    let allowed = |character: char| {
        character.is_ascii_lowercase()
            || character.is_ascii_digit()
            || matches!(character, '-' | '.')
            || (kind == StorageKind::Gcs && character == '_')
    };
    let edge = |character: Option<char>| {
        character
            .is_some_and(|character| character.is_ascii_lowercase() || character.is_ascii_digit())
    };
    let valid = (3..=63).contains(&bucket.len())
        && bucket.chars().all(allowed)
        && edge(bucket.chars().next())
        && edge(bucket.chars().last());
    if valid {
        return Ok(());
    }
    let extra = if kind == StorageKind::Gcs {
        ", '_'"
    } else {
        ""
    };
    Err(format!(
        "storage.bucket {bucket:?} is not a valid bucket name: use 3 to 63 lowercase letters, digits, '-', '.'{extra}, starting and ending with a letter or digit (an unset $VARIABLE stays as written)"
    ))
}

/// Shows the storage type and bucket only: the other keys may hold
/// credentials, which must never reach a log.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("project", &self.project)
            .field("attempts", &self.attempts)
            .field("other_keys", &self.other.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `resources_needed:` and the `--cpus --gpus --ram --hdd --gpuMem` flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// A negative count hides every GPU from the experiment.
    pub gpus: Option<i32>,
    pub ram: Option<String>,
    pub hdd: Option<String>,
    #[serde(rename = "gpuMem")]
    pub gpu_mem: Option<String>,
    #[serde(rename = "gpuCount")]
    pub gpu_count: Option<u32>,
    #[serde(rename = "gpuMemStrict")]
    pub gpu_mem_strict: Option<bool>,
}

impl Resources {
    /// Checks the values: at least one CPU, and sizes that
    /// [`parse_size`] reads.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpus == Some(0) {
            return Err(
                "cpus is 0: an experiment needs at least 1 CPU (--cpus or resources_needed.cpus)"
                    .into(),
            );
        }
        for (name, value) in [
            ("ram", &self.ram),
            ("hdd", &self.hdd),
            ("gpuMem", &self.gpu_mem),
        ] {
            if let Some(value) = value {
                parse_size(value).map_err(|error| {
                    format!("{name} {error} (--{name} or resources_needed.{name})")
                })?;
            }
        }
        Ok(())
    }
}

/// Parses a size such as `3g`, `512M`, `1.5T`, `60GB` or `1024` (bytes)
/// into bytes. Units are powers of 1024, as in StudioML configs.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let without_b = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, factor) = match without_b.chars().last() {
        Some('k') => (&without_b[..without_b.len() - 1], 1u64 << 10),
        Some('m') => (&without_b[..without_b.len() - 1], 1 << 20),
        Some('g') => (&without_b[..without_b.len() - 1], 1 << 30),
        Some('t') => (&without_b[..without_b.len() - 1], 1 << 40),
        _ => (without_b, 1),
    };
    let invalid = || {
        format!("{text:?} is not a size: use a number with an optional unit k, m, g or t, such as 512m or 3g")
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "{text:?} is not a size: it must be more than 0, such as 512m or 3g"
        ));
    }
    let bytes = value * factor as f64;
    if bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large: sizes go up to 16 EiB"));
    }
    Ok(bytes as u64)
}

/// `server:`, Studio's own section: where the daemon listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API and dashboard; `off` disables HTTP.
    pub http: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: "127.0.0.1:5000".into(),
        }
    }
}

/// A config file that was read, with what it set and what was ignored.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, or `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    /// Keys that were ignored, one sentence each.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found: check the path given to --config")]
    NotFound { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `message` ends with what to do about it.
    #[error("invalid config file {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Loads `explicit` (which must exist), else `default_file` when it
    /// exists, else the embedded defaults.
    pub fn load(
        explicit: Option<&Path>,
        default_file: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        let path = match explicit {
            Some(path) if !path.exists() => {
                return Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Some(path) => Some(path.to_path_buf()),
            None if default_file.exists() => Some(default_file.to_path_buf()),
            None => None,
        };
        let Some(path) = path else {
            let (config, warnings) =
                Self::parse(DEFAULT_CONFIG_YAML, "<embedded defaults>", &lookup)?;
            return Ok(LoadedConfig {
                config,
                source: None,
                warnings,
            });
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let (config, warnings) = Self::parse(&text, &path.display().to_string(), &lookup)?;
        Ok(LoadedConfig {
            config,
            source: Some(path),
            warnings,
        })
    }

    /// Parses YAML text; `origin` names the file in messages.
    pub fn parse(
        text: &str,
        origin: &str,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|error| invalid(format!("{error}; fix the YAML syntax there")))?;
        if value.is_null() {
            return Ok((Config::default(), Vec::new()));
        }
        let Some(mapping) = value.as_mapping_mut() else {
            return Err(invalid(
                "the top level must be a mapping of keys to values; write one `key: value` per line, as in config/default.yaml".into(),
            ));
        };

        let mut warnings = Vec::new();
        let mut ignored = Vec::new();
        for key in mapping.keys() {
            let Some(name) = key.as_str() else {
                return Err(invalid(format!(
                    "key {key:?} is not a string; name the keys as in config/default.yaml"
                )));
            };
            if SUPPORTED_KEYS.contains(&name) {
                continue;
            }
            if LEGACY_KEYS.contains(&name) {
                warnings.push(format!(
                    "{origin}: key '{name}' of StudioML is not used by Studio and is ignored"
                ));
            } else {
                warnings.push(format!(
                    "{origin}: unknown key '{name}' is ignored; check its spelling"
                ));
            }
            ignored.push(key.clone());
        }
        for key in ignored {
            mapping.remove(&key);
        }

        let unset = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let tracking_lookup = |name: &str| {
            let found = lookup(name);
            if found.is_none() && !name.is_empty() {
                unset.borrow_mut().insert(name.to_string());
            }
            found
        };
        substitute_variables(&mut value, &tracking_lookup);
        for name in unset.into_inner() {
            warnings.push(format!(
                "{origin}: environment variable {name} is not set, so ${name} stays as written; set it, or write the value itself"
            ));
        }
        let config: Config = serde_path_to_error::deserialize(value).map_err(|error| {
            invalid(format!(
                "key {}: {}; fix the value, or remove the key to use its default",
                error.path(),
                error.inner()
            ))
        })?;
        // Each message of `validate` names the valid values.
        config.validate().map_err(invalid)?;
        warnings.extend(config.unsupported_settings(origin));
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), String> {
        if self.stop_grace < 0.0 {
            return Err(format!(
                "stop_grace is {}, it must be 0 or more seconds",
                self.stop_grace
            ));
        }
        for (key, seconds) in [
            ("saveWorkspaceFrequency", self.save_workspace_frequency),
            ("saveMetricsFrequency", self.save_metrics_frequency),
        ] {
            if seconds <= 0.0 {
                return Err(format!(
                    "{key} is {seconds}s, it must be more than 0 seconds"
                ));
            }
        }
        self.resources_needed.validate()?;
        if let Some(attempts) = self.storage.attempts {
            if !(1..=MAX_STORE_ATTEMPTS).contains(&attempts) {
                return Err(format!(
                    "storage.attempts is {attempts}, it must be 1 to {MAX_STORE_ATTEMPTS} tries"
                ));
            }
        }
        // An unknown type is an error rather than a fallback to the local
        // store, so a misspelt bucket type cannot keep artifacts on one host.
        self.storage.backend()?;
        if self.server.http != "off" && self.server.http.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "server.http is {:?}, expected an address such as 127.0.0.1:5000, or off",
                self.server.http
            ));
        }
        Ok(())
    }

    fn unsupported_settings(&self, origin: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        if !matches!(self.database.kind.as_str(), "local" | "") {
            warnings.push(format!(
                "{origin}: database type '{}' is not used: Studio keeps experiment records in its local event log",
                self.database.kind
            ));
        }
        if let Some(queue) = self.queue.as_deref().filter(|queue| !queue.is_empty()) {
            warnings.push(format!(
                "{origin}: queue '{queue}' is not used yet: experiments run on this host unless --queue local is given"
            ));
        }
        if !self.cloud.is_null() {
            warnings.push(format!(
                "{origin}: the cloud section is not used yet: experiments run on this host"
            ));
        }
        warnings
    }
}

/// Replaces `$NAME` and `${NAME}` in every string of `value`, in mappings
/// and in lists; a variable that `lookup` does not know stays as written.
pub fn substitute_variables(
    value: &mut serde_yaml_ng::Value,
    lookup: &impl Fn(&str) -> Option<String>,
) {
    match value {
        serde_yaml_ng::Value::String(text) => *text = expand(text, lookup),
        serde_yaml_ng::Value::Sequence(items) => {
            for item in items {
                substitute_variables(item, lookup);
            }
        }
        serde_yaml_ng::Value::Mapping(mapping) => {
            for (_, item) in mapping.iter_mut() {
                substitute_variables(item, lookup);
            }
        }
        _ => {}
    }
}

/// Expands `$NAME` and `${NAME}` in one string.
pub fn expand(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        result.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (name.is_empty(), lookup(name)) {
            (false, Some(found)) => result.push_str(&found),
            _ => result.push_str(&rest[position..position + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    result.push_str(rest);
    result
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = serde_yaml_ng::Value::deserialize(deserializer)?;
    seconds_of(&value).map_err(serde::de::Error::custom)
}

fn optional_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value = serde_yaml_ng::Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(None);
    }
    seconds_of(&value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn seconds_of(value: &serde_yaml_ng::Value) -> Result<f64, String> {
    match value {
        serde_yaml_ng::Value::Number(number) => number
            .as_f64()
            .ok_or_else(|| format!("invalid duration {number}")),
        serde_yaml_ng::Value::String(text) => {
            crate::duration::parse_seconds(text).map_err(|error| error.to_string())
        }
        other => Err(format!(
            "invalid duration {other:?}: use a number of seconds or a string such as 90s or 1m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shipped_default_file_matches_defaults() {
        let (config, warnings) =
            Config::parse(DEFAULT_CONFIG_YAML, "default.yaml", &no_env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (config, warnings) = Config::parse("", "empty.yaml", &no_env).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn old_studioml_file_loads_with_warnings() {
        let text = r#"
database:
    type: http
    serverUrl: https://zoo.studio.ml
    authentication: github
storage:
    type: gcloud
    bucket: studio-ed756.appspot.com
queue: local
saveMetricsFrequency: 1m
saveWorkspaceFrequency: 1m
verbose: error
cloud:
    gcloud:
        zone: us-east1-c
resources_needed:
    cpus: 2
    ram: 3g
    hdd: 60g
    gpus: 0
sleep_time: 1
worker_timeout: 30
optimizer:
    cmaes_config:
        popsize: 100
"#;
        let (config, warnings) = Config::parse(text, "old.yaml", &no_env).unwrap();
        assert_eq!(config.save_workspace_frequency, 60.0);
        assert_eq!(config.resources_needed.cpus, Some(2));
        assert_eq!(config.queue.as_deref(), Some("local"));
        let joined = warnings.join("\n");
        assert!(joined.contains("'worker_timeout'"), "{joined}");
        assert!(joined.contains("database type 'http'"), "{joined}");
        assert!(!joined.contains("storage type"), "{joined}");
        assert_eq!(config.storage.backend(), Ok(StorageKind::Gcs));
    }

    #[test]
    fn cloud_storage_types_parse() {
        let text = "storage:\n  type: s3\n  bucket: $BUCKET\n  endpoint: http://127.0.0.1:9000\n  region: eu-west-1\n  profile: lab\n";
        let lookup = |name: &str| (name == "BUCKET").then(|| "models".to_string());
        let (config, warnings) = Config::parse(text, "s3.yaml", &lookup).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.storage.backend(), Ok(StorageKind::S3));
        assert_eq!(config.storage.bucket.as_deref(), Some("models"));
        assert_eq!(config.storage.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.storage.profile.as_deref(), Some("lab"));

        let text = "storage:\n  type: gcs\n  bucket: bucket-b\n  project: p\n";
        let (config, _) = Config::parse(text, "gcs.yaml", &no_env).unwrap();
        assert_eq!(config.storage.backend(), Ok(StorageKind::Gcs));
        assert_eq!(config.storage.project.as_deref(), Some("p"));
    }

    #[test]
    fn cloud_storage_needs_bucket() {
        let error = Config::parse("storage:\n  type: s3\n", "c.yaml", &no_env).unwrap_err();
        assert!(error.to_string().contains("storage.bucket"), "{error}");
    }

    #[test]
    fn unknown_storage_type_is_an_error() {
        let error = Config::parse("storage:\n  type: ftp\n", "c.yaml", &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("storage type 'ftp' is not supported: use local, s3 or gcs"),
            "{error}"
        );
    }

    #[test]
    fn unused_queue_and_cloud_warn() {
        let text = "queue: sqs_jobs\ncloud:\n  type: ec2\n";
        let (_, warnings) = Config::parse(text, "c.yaml", &no_env).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("queue 'sqs_jobs' is not used yet"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("cloud section is not used yet"),
            "{warnings:?}"
        );
    }

    #[test]
    fn storage_debug_hides_other_keys() {
        let text = "storage:\n  type: s3\n  bucket: bucket-b\n  secret_key: hunter2\n";
        let (config, _) = Config::parse(text, "c.yaml", &no_env).unwrap();
        let shown = format!("{:?}", config.storage);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("secret_key"), "{shown}");
    }

    #[test]
    fn unknown_key_is_a_warning() {
        let (_, warnings) = Config::parse("colour: blue\n", "c.yaml", &no_env).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("unknown key 'colour'"));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let error =
            Config::parse("resources_needed:\n  cpus: many\n", "c.yaml", &no_env).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("c.yaml"), "{message}");
        assert!(message.contains("cpus"), "{message}");
    }

    #[test]
    fn malformed_yaml_is_rejected() {
        let error = Config::parse("env: [unclosed\n", "bad.yaml", &no_env).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("invalid config file bad.yaml"));
    }

    #[test]
    fn bad_duration_is_rejected() {
        let error = Config::parse("saveWorkspaceFrequency: soon\n", "c.yaml", &no_env).unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
    }

    #[test]
    fn bad_http_address_is_rejected() {
        let error = Config::parse("server:\n  http: localhost\n", "c.yaml", &no_env).unwrap_err();
        assert!(error.to_string().contains("server.http"), "{error}");
    }

    #[test]
    fn variables_are_substituted_in_maps_and_lists() {
        let lookup = |name: &str| match name {
            "TEST_VAR" => Some("value".to_string()),
            _ => None,
        };
        let text = "env:\n  A: $TEST_VAR/x\n  B: ${TEST_VAR}y\n  C: $UNKNOWN_VAR\ncloud:\n  list: [$TEST_VAR]\n";
        let (config, warnings) = Config::parse(text, "c.yaml", &lookup).unwrap();
        assert_eq!(
            warnings[0],
            "c.yaml: environment variable UNKNOWN_VAR is not set, so $UNKNOWN_VAR stays as written; set it, or write the value itself"
        );
        // The second warning is that the cloud section is not used yet.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(config.env["A"], "value/x");
        assert_eq!(config.env["B"], "valuey");
        assert_eq!(config.env["C"], "$UNKNOWN_VAR");
        assert_eq!(config.cloud["list"][0].as_str(), Some("value"));
    }

    #[test]
    fn expand_edge_cases() {
        let lookup = |name: &str| (name == "X").then(|| "1".to_string());
        assert_eq!(expand("$", &lookup), "$");
        assert_eq!(expand("a$X$X", &lookup), "a11");
        assert_eq!(expand("${X", &lookup), "${X");
        assert_eq!(expand("$$X", &lookup), "$1");
        assert_eq!(expand("cost: 5$", &lookup), "cost: 5$");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("nope.yaml");
        let error = Config::load(
            Some(&missing),
            &directory.path().join("config.yaml"),
            no_env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("nope.yaml"));
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        let cases: [(&str, u64); 8] = [
            ("1024", 1024),
            ("3g", 3 << 30),
            ("3G", 3 << 30),
            ("60GB", 60 << 30),
            ("512m", 512 << 20),
            ("1.5t", 3 << 39),
            ("8 GiB", 8 << 30),
            ("4k", 4096),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for text in ["1z", "", "g", "-3g", "0", "3gg", "nan", "1e30t"] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains(&format!("{text:?}")), "{text}: {error}");
        }
    }

    #[test]
    fn bad_resources_name_the_key() {
        let error = Config::parse("resources_needed:\n  ram: 1z\n", "c.yaml", &no_env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("resources_needed.ram"), "{error}");
        assert!(error.contains("\"1z\""), "{error}");
        let error = Config::parse("resources_needed:\n  cpus: 0\n", "c.yaml", &no_env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("at least 1 CPU"), "{error}");
    }

    #[test]
    fn bucket_names_follow_the_naming_rules() {
        for good in ["abc", "team-artifacts", "a.b.c", "x".repeat(63).as_str()] {
            assert_eq!(
                validate_bucket_name(good, StorageKind::S3),
                Ok(()),
                "{good}"
            );
        }
        assert_eq!(validate_bucket_name("my_bucket", StorageKind::Gcs), Ok(()));
        for bad in [
            "b",
            "Bad_Bucket!",
            "$NOSUCHVAR",
            "-abc",
            "abc-",
            "x".repeat(64).as_str(),
        ] {
            let error = validate_bucket_name(bad, StorageKind::S3).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
        assert!(validate_bucket_name("my_bucket", StorageKind::S3).is_err());
        let error = Config::parse(
            "storage:\n  type: s3\n  bucket: $UNSET_BUCKET\n",
            "c.yaml",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("an unset $VARIABLE stays as written"),
            "{error}"
        );
    }
}
