//! Optimizer plugins: a Python file with StudioML's `Optimizer` class, run
//! by `plugin_driver.py` in a child process that studiod talks to in JSON
//! lines (the protocol is described in that file).

use super::optimizer::{Candidate, Optimizer};
use crate::metrics::FitnessReport;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use studio_core::hyperparam::OptimizerParam;

/// The driver, written next to the search's files when a plugin is used.
pub const DRIVER: &str = include_str!("plugin_driver.py");

pub struct PluginOptimizer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    params: Vec<OptimizerParam>,
}

impl PluginOptimizer {
    /// Starts the driver for `plugin` with `python`; its stderr goes to
    /// `log`. Fails when the plugin cannot be loaded or constructed.
    pub fn start(
        python: &Path,
        driver: &Path,
        plugin: &Path,
        params: Vec<OptimizerParam>,
        config: &Value,
        log: &Path,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let log_file = std::fs::File::create(log)
            .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
        let mut child = Command::new(python)
            .arg(driver)
            .arg(plugin)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", python.display()))?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the optimizer driver has no pipes".into());
        };
        let mut plugin_optimizer = Self {
            child,
            input,
            output: BufReader::new(output),
            params,
        };
        let setup = json!({"hyperparameters": plugin_optimizer.params, "config": config});
        plugin_optimizer.exchange(&setup).map_err(|error| {
            format!(
                "the optimizer plugin {} failed to load: {error}",
                plugin.display()
            )
        })?;
        Ok(plugin_optimizer)
    }

    // NOTE: reads have no timeout, so a plugin that never answers holds its
    // search (stopping it still stops the experiments).
    fn exchange(&mut self, message: &Value) -> Result<Value, String> {
        writeln!(self.input, "{message}")
            .and_then(|()| self.input.flush())
            .map_err(|error| format!("cannot write to the optimizer: {error}"))?;
        let mut line = String::new();
        let read = self
            .output
            .read_line(&mut line)
            .map_err(|error| format!("cannot read from the optimizer: {error}"))?;
        if read == 0 {
            return Err("the optimizer exited; see optimizer.log in the search's directory".into());
        }
        let answer: Value = serde_json::from_str(&line)
            .map_err(|error| format!("invalid answer from the optimizer ({error}): {line}"))?;
        if answer["ok"] == json!(true) {
            Ok(answer)
        } else {
            Err(answer["error"]
                .as_str()
                .unwrap_or("the optimizer reported an error")
                .trim()
                .to_string())
        }
    }
}

impl Optimizer for PluginOptimizer {
    fn ask(&mut self) -> Result<Vec<Candidate>, String> {
        let answer = self.exchange(&json!({"op": "ask"}))?;
        if answer["stop"] == json!(true) {
            return Ok(Vec::new());
        }
        let Some(population) = answer["population"].as_array() else {
            return Err("the optimizer's ask() returned no population".into());
        };
        population
            .iter()
            .map(|individual| {
                let values: Result<Vec<Vec<f64>>, String> = self
                    .params
                    .iter()
                    .map(|param| match &individual[&param.name] {
                        Value::Number(number) => number
                            .as_f64()
                            .map(|value| vec![value])
                            .ok_or_else(|| format!("invalid value of {}", param.name)),
                        Value::Array(items) => items
                            .iter()
                            .map(|item| {
                                item.as_f64()
                                    .ok_or_else(|| format!("invalid value in {}", param.name))
                            })
                            .collect(),
                        _ => Err(format!(
                            "the optimizer's ask() gave no value for {}",
                            param.name
                        )),
                    })
                    .collect();
                values.map(|values| Candidate::from_values(&self.params, &values))
            })
            .collect()
    }

    fn tell(&mut self, reports: &[FitnessReport]) -> Result<(), String> {
        // StudioML counted a missing fitness as 0.
        let fitnesses: Vec<f64> = reports
            .iter()
            .map(|report| report.fitness.unwrap_or(0.0))
            .collect();
        let behaviors: Option<Vec<Vec<f64>>> = reports
            .iter()
            .map(|report| report.behavior.clone())
            .collect();
        self.exchange(&json!({"op": "tell", "fitnesses": fitnesses, "behaviors": behaviors}))?;
        Ok(())
    }

    fn adapts(&self) -> bool {
        true
    }
}

impl Drop for PluginOptimizer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
