//! The `--metric` of running experiments: read from output lines such as
//! `accuracy: 0.97` or `loss = 0.1`, and from scalars in the TensorBoard
//! files of the `tb` artifact, and recorded as `MetricReported` events.

use crate::daemon::Daemon;
use crate::events::Event;
use crate::tensorboard::EventFileReader;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use studio_core::hyperparam::MetricSpec;

/// Time between two reads of a running experiment's output and tb files.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Folds a reported `value` into the experiment's metric value following
/// `metric`'s direction (`:min`, `:max`, else the last value).
pub fn fold_metric(metric: Option<&str>, current: Option<f64>, value: f64) -> f64 {
    match metric.and_then(|text| MetricSpec::parse(text).ok()) {
        Some(spec) => spec.fold(current, value),
        None => value,
    }
}

/// Parses `NAME: VALUE` or `NAME = VALUE` (spaces around the separator
/// optional) when NAME is `name`; other lines give `None`.
pub fn parse_metric_line(line: &str, name: &str) -> Option<f64> {
    let rest = line.trim().strip_prefix(name)?;
    let rest = rest.trim_start();
    let value = rest.strip_prefix(':').or_else(|| rest.strip_prefix('='))?;
    let number = value.split_whitespace().next()?;
    number
        .trim_end_matches(',')
        .parse::<f64>()
        .ok()
        .filter(|number| number.is_finite())
}

/// Reads only what was appended to one file since the last call, and hands
/// back complete lines.
#[derive(Default)]
struct LineTail {
    offset: u64,
    partial: Vec<u8>,
}

impl LineTail {
    fn read_lines(&mut self, path: &Path, final_read: bool) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buffer = Vec::new();
        if let Ok(count) = file.read_to_end(&mut buffer) {
            self.offset += count as u64;
        }
        self.partial.extend_from_slice(&buffer);
        let mut lines = Vec::new();
        while let Some(position) = self.partial.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=position).collect();
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if final_read && !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        lines
    }
}

/// Everything read so far from one experiment's output and tb files.
struct MetricSources {
    name: String,
    output: PathBuf,
    tb: PathBuf,
    output_tail: LineTail,
    tb_readers: BTreeMap<PathBuf, EventFileReader>,
}

impl MetricSources {
    /// New values of the metric in the order found: output lines first,
    /// then TensorBoard scalars, each with its step when known.
    fn read_new(&mut self, final_read: bool) -> Vec<(f64, Option<i64>)> {
        let mut values: Vec<(f64, Option<i64>)> = self
            .output_tail
            .read_lines(&self.output, final_read)
            .iter()
            .filter_map(|line| parse_metric_line(line, &self.name))
            .map(|value| (value, None))
            .collect();
        for path in crate::tensorboard::event_files(&self.tb) {
            let reader = self.tb_readers.entry(path.clone()).or_default();
            match reader.read_new(&path) {
                Ok(scalars) => values.extend(
                    scalars
                        .into_iter()
                        .filter(|scalar| scalar.tag == self.name)
                        .map(|scalar| (scalar.value, Some(scalar.step))),
                ),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read TensorBoard file")
                }
            }
        }
        values
    }
}

impl Daemon {
    /// Follows the experiment's `--metric` until it ends, then reads once
    /// more so that the last value is recorded. Returns at once when the
    /// experiment has no metric.
    pub async fn follow_metrics(self: Arc<Self>, key: String) {
        let Some(experiment) = self.experiment(&key) else {
            return;
        };
        let Some(spec) = experiment
            .metric
            .as_deref()
            .and_then(|text| MetricSpec::parse(text).ok())
        else {
            return;
        };
        let directory = self.paths.experiment_dir(&key);
        let mut sources = MetricSources {
            name: spec.name.clone(),
            output: directory.join("output"),
            tb: directory.join("tb"),
            output_tail: LineTail::default(),
            tb_readers: BTreeMap::new(),
        };
        let mut reported = experiment.metric_value;
        loop {
            let ended = self.status(&key).is_none_or(|status| status.is_final());
            let read = tokio::task::block_in_place(|| sources.read_new(ended));
            // One event a poll: the value that changes the folded metric
            // last (the best new one for min and max, the newest for last),
            // so a burst of points costs one durable append, not one each.
            let mut latest = None;
            for (value, step) in read {
                let folded = spec.fold(reported, value);
                if reported == Some(folded)
                    && spec.mode != studio_core::hyperparam::MetricMode::Last
                {
                    continue;
                }
                reported = Some(folded);
                latest = Some((value, step));
            }
            if let Some((value, step)) = latest {
                let event = Event::MetricReported { value, step };
                if let Err(error) = self.log.append(&key, event).await {
                    tracing::error!(key, %error, "cannot record a metric value");
                    return;
                }
            }
            if ended {
                self.searches.metrics_done(&key);
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Fitness and behaviour that an experiment printed for an optimizer: the
/// first `fitness: X` line (also `Fitness:`) and the first `behavior: [..]`
/// line, whose value is a JSON or Python list of numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FitnessReport {
    pub fitness: Option<f64>,
    pub behavior: Option<Vec<f64>>,
}

pub fn parse_fitness(output: &str) -> FitnessReport {
    let mut report = FitnessReport::default();
    for line in output.lines() {
        let trimmed = line.trim();
        if report.fitness.is_none() {
            if let Some(value) = parse_metric_line(trimmed, "fitness")
                .or_else(|| parse_metric_line(trimmed, "Fitness"))
            {
                report.fitness = Some(value);
            }
        }
        if report.behavior.is_none() {
            let rest = trimmed
                .strip_prefix("behavior:")
                .or_else(|| trimmed.strip_prefix("Behavior:"));
            if let Some(rest) = rest {
                let numbers: Option<Vec<f64>> = rest
                    .trim()
                    .trim_start_matches(['[', '('])
                    .trim_end_matches([']', ')'])
                    .split([',', ' '])
                    .filter(|item| !item.is_empty())
                    .map(|item| item.parse::<f64>().ok())
                    .collect();
                report.behavior = numbers;
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines() {
        let cases = [
            ("accuracy: 0.97\n", Some(0.97)),
            ("accuracy=0.5", Some(0.5)),
            ("  accuracy = -1e-3 (epoch 2)", Some(-0.001)),
            ("accuracy: 0", Some(0.0)),
            ("accuracy_top5: 0.9", None),
            ("val accuracy: 0.9", None),
            ("accuracy: high", None),
            ("accuracy: nan", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_metric_line(line, "accuracy"), expected, "{line:?}");
        }
    }

    #[test]
    fn zero_is_a_real_value_when_folding() {
        assert_eq!(fold_metric(Some("loss:min"), Some(0.0), 0.3), 0.0);
        assert_eq!(fold_metric(Some("acc:max"), Some(0.0), -0.3), 0.0);
        assert_eq!(fold_metric(Some("acc"), Some(0.9), 0.0), 0.0);
        assert_eq!(fold_metric(None, None, 2.0), 2.0);
    }

    #[test]
    fn fitness_and_behavior() {
        let output = "start\nfitness: -2.25\nFitness: 9\nbehavior: [1, 2.5]\n";
        let report = parse_fitness(output);
        assert_eq!(report.fitness, Some(-2.25));
        assert_eq!(report.behavior, Some(vec![1.0, 2.5]));
        assert_eq!(parse_fitness("no result\n"), FitnessReport::default());
    }

    #[test]
    fn tail_returns_complete_lines_only() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("output");
        std::fs::write(&path, "a: 1\nb: 2").unwrap();
        let mut tail = LineTail::default();
        assert_eq!(tail.read_lines(&path, false), ["a: 1\n"]);
        std::fs::write(&path, "a: 1\nb: 2\n").unwrap();
        assert_eq!(tail.read_lines(&path, false), ["b: 2\n"]);
        std::fs::write(&path, "a: 1\nb: 2\nc: 3").unwrap();
        assert_eq!(tail.read_lines(&path, true), ["c: 3"]);
    }
}
