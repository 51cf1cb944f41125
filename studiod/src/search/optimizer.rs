//! Optimizers of a search: they propose candidates (`ask`) and, when they
//! adapt, learn from the experiments' fitness (`tell`).

use crate::metrics::FitnessReport;
use std::collections::BTreeMap;
use studio_core::hyperparam::{format_number, OptimizerParam};

/// Values of one experiment: scalars are substituted into the script,
/// arrays are saved as `.npy` artifacts named after the parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub scalars: BTreeMap<String, String>,
    pub arrays: BTreeMap<String, Vec<f64>>,
}

impl Candidate {
    /// Builds a candidate from one point per parameter, in `params` order.
    pub fn from_values(params: &[OptimizerParam], values: &[Vec<f64>]) -> Self {
        let mut candidate = Candidate::default();
        for (param, value) in params.iter().zip(values) {
            if param.array_length.is_some() {
                candidate.arrays.insert(param.name.clone(), value.clone());
            } else if let Some(scalar) = value.first() {
                candidate
                    .scalars
                    .insert(param.name.clone(), format_number(*scalar));
            }
        }
        candidate
    }

    /// Formats every value as text, arrays as `[a, b, ...]`, for the record.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut values = self.scalars.clone();
        for (name, array) in &self.arrays {
            let items: Vec<String> = array.iter().map(|value| format_number(*value)).collect();
            values.insert(name.clone(), format!("[{}]", items.join(", ")));
        }
        values
    }
}

pub trait Optimizer: Send {
    /// Proposes the next batch of candidates, empty when the search is over.
    fn ask(&mut self) -> Result<Vec<Candidate>, String>;
    /// Reports the fitness of the last batch, in the order proposed. A
    /// report without fitness is an experiment that printed none.
    fn tell(&mut self, reports: &[FitnessReport]) -> Result<(), String>;
    /// False for optimizers that never read fitness (grid, random): their
    /// batches run without waiting for the previous one.
    fn adapts(&self) -> bool;
}

/// Every combination of the grid, in one batch.
pub struct GridOptimizer {
    combinations: Option<Vec<BTreeMap<String, String>>>,
}

impl GridOptimizer {
    pub fn new(combinations: Vec<BTreeMap<String, String>>) -> Self {
        Self {
            combinations: Some(combinations),
        }
    }
}

impl Optimizer for GridOptimizer {
    fn ask(&mut self) -> Result<Vec<Candidate>, String> {
        Ok(self
            .combinations
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|scalars| Candidate {
                scalars,
                arrays: BTreeMap::new(),
            })
            .collect())
    }

    fn tell(&mut self, _reports: &[FitnessReport]) -> Result<(), String> {
        Ok(())
    }

    fn adapts(&self) -> bool {
        false
    }
}

/// `trials` independent points, uniform in each range (in `log10` for
/// parameters with the `l` flag), in one batch.
pub struct RandomOptimizer {
    params: Vec<OptimizerParam>,
    trials: usize,
    rng: fastrand::Rng,
    asked: bool,
}

impl RandomOptimizer {
    pub fn new(params: Vec<OptimizerParam>, trials: usize, seed: Option<u64>) -> Self {
        Self {
            params,
            trials,
            rng: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            asked: false,
        }
    }
}

impl Optimizer for RandomOptimizer {
    fn ask(&mut self) -> Result<Vec<Candidate>, String> {
        if std::mem::replace(&mut self.asked, true) {
            return Ok(Vec::new());
        }
        let mut batch = Vec::with_capacity(self.trials);
        for _ in 0..self.trials {
            let values: Vec<Vec<f64>> = self
                .params
                .iter()
                .map(|param| {
                    (0..param.dimensions())
                        .map(|_| param.from_unit(self.rng.f64()))
                        .collect()
                })
                .collect();
            batch.push(Candidate::from_values(&self.params, &values));
        }
        Ok(batch)
    }

    fn tell(&mut self, _reports: &[FitnessReport]) -> Result<(), String> {
        Ok(())
    }

    fn adapts(&self) -> bool {
        false
    }
}

/// The config's `optimizer:` section, StudioML's keys plus `trials` and
/// `seed` for the random optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSettings {
    pub popsize: Option<usize>,
    pub sigma0: f64,
    pub generations: usize,
    /// Stop when the best fitness reaches this value.
    pub fitness: f64,
    /// Fraction of a generation that must have reported before the rest is
    /// given up after `skip_gen_timeout` seconds without a new result.
    pub skip_gen_thres: f64,
    pub skip_gen_timeout: f64,
    pub trials: usize,
    pub seed: Option<u64>,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        Self {
            popsize: None,
            sigma0: 0.25,
            generations: 5,
            fitness: 999.0,
            skip_gen_thres: 1.0,
            skip_gen_timeout: 30.0,
            trials: 10,
            seed: None,
        }
    }
}

impl OptimizerSettings {
    /// Reads the section; a present key of the wrong type is an error.
    pub fn from_config(section: &serde_json::Value) -> Result<Self, String> {
        let mut settings = Self::default();
        if section.is_null() {
            return Ok(settings);
        }
        let cmaes = &section["cmaes_config"];
        let termination = &section["termination_criterion"];
        if let Some(popsize) = read_count(cmaes, "popsize", "optimizer.cmaes_config.popsize")? {
            if popsize < 2 {
                return Err(format!(
                    "invalid optimizer.cmaes_config.popsize {popsize}: use 2 or more"
                ));
            }
            settings.popsize = Some(popsize);
        }
        if let Some(sigma0) = read_number(cmaes, "sigma0", "optimizer.cmaes_config.sigma0")? {
            if sigma0 <= 0.0 {
                return Err(format!(
                    "invalid optimizer.cmaes_config.sigma0 {sigma0}: use a value above 0"
                ));
            }
            settings.sigma0 = sigma0;
        }
        if let Some(generations) = read_count(
            termination,
            "generation",
            "optimizer.termination_criterion.generation",
        )? {
            settings.generations = generations;
        }
        if let Some(fitness) = read_number(
            termination,
            "fitness",
            "optimizer.termination_criterion.fitness",
        )? {
            settings.fitness = fitness;
        }
        if let Some(threshold) = read_number(
            termination,
            "skip_gen_thres",
            "optimizer.termination_criterion.skip_gen_thres",
        )? {
            settings.skip_gen_thres = threshold;
        }
        if let Some(timeout) = read_number(
            termination,
            "skip_gen_timeout",
            "optimizer.termination_criterion.skip_gen_timeout",
        )? {
            settings.skip_gen_timeout = timeout;
        }
        if let Some(trials) = read_count(section, "trials", "optimizer.trials")? {
            settings.trials = trials;
        }
        if let Some(seed) = read_count(section, "seed", "optimizer.seed")? {
            settings.seed = Some(seed as u64);
        }
        Ok(settings)
    }
}

fn read_number(section: &serde_json::Value, key: &str, path: &str) -> Result<Option<f64>, String> {
    match section.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("invalid {path} {value}: use a number")),
    }
}

fn read_count(section: &serde_json::Value, key: &str, path: &str) -> Result<Option<usize>, String> {
    match section.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(|count| Some(count as usize))
            .ok_or_else(|| format!("invalid {path} {value}: use a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_config() {
        let section = serde_json::json!({
            "cmaes_config": {"popsize": 6, "sigma0": 0.3},
            "termination_criterion": {"generation": 12, "fitness": -0.01},
            "trials": 4
        });
        let settings = OptimizerSettings::from_config(&section).unwrap();
        assert_eq!(settings.popsize, Some(6));
        assert_eq!(settings.sigma0, 0.3);
        assert_eq!(settings.generations, 12);
        assert_eq!(settings.fitness, -0.01);
        assert_eq!(settings.trials, 4);
        let bad = serde_json::json!({"cmaes_config": {"popsize": "many"}});
        let error = OptimizerSettings::from_config(&bad).unwrap_err();
        assert!(error.contains("optimizer.cmaes_config.popsize"), "{error}");
    }

    #[test]
    fn random_points_stay_in_range() {
        let params = vec![
            OptimizerParam::parse("lr=0.001:1:l").unwrap(),
            OptimizerParam::parse("w=-1:1:3:a").unwrap(),
        ];
        let mut optimizer = RandomOptimizer::new(params, 20, Some(7));
        let batch = optimizer.ask().unwrap();
        assert_eq!(batch.len(), 20);
        for candidate in &batch {
            let lr: f64 = candidate.scalars["lr"].parse().unwrap();
            assert!((0.001..=1.0).contains(&lr), "{lr}");
            assert_eq!(candidate.arrays["w"].len(), 3);
            assert!(candidate.arrays["w"]
                .iter()
                .all(|w| (-1.0..=1.0).contains(w)));
        }
        assert!(optimizer.ask().unwrap().is_empty());
    }
}
