//! What a search request asks for: the optimizer and its parameters,
//! parsed and checked before the workspace is copied.

use super::optimizer::{GridOptimizer, Optimizer, OptimizerSettings, RandomOptimizer};
use super::{cmaes, plugin};
use crate::api::ApiError;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use studio_core::api::RunRequest;
use studio_core::hyperparam::{grid_product, grid_size, parse_grid, OptimizerParam};

/// Most experiments one grid search may create.
const MAX_GRID: usize = 100_000;

/// The optimizer and its parameters, checked before anything is copied.
pub(super) enum Plan {
    Grid(Vec<BTreeMap<String, String>>),
    Random(Vec<OptimizerParam>, usize),
    Cmaes(Vec<OptimizerParam>),
    Plugin(PathBuf, Vec<OptimizerParam>, serde_json::Value),
}

impl Plan {
    pub(super) fn total(&self) -> Option<usize> {
        match self {
            Plan::Grid(combinations) => Some(combinations.len()),
            Plan::Random(_, trials) => Some(*trials),
            Plan::Cmaes(_) | Plan::Plugin(..) => None,
        }
    }

    pub(super) fn scalar_names(&self) -> Vec<String> {
        match self {
            Plan::Grid(combinations) => combinations
                .first()
                .map(|combination| combination.keys().cloned().collect())
                .unwrap_or_default(),
            Plan::Random(params, _) | Plan::Cmaes(params) | Plan::Plugin(_, params, _) => params
                .iter()
                .filter(|param| param.array_length.is_none())
                .map(|param| param.name.clone())
                .collect(),
        }
    }

    pub(super) fn build(
        &self,
        settings: &OptimizerSettings,
        directory: &Path,
        template: &RunRequest,
    ) -> Result<Box<dyn Optimizer>, String> {
        Ok(match self {
            Plan::Grid(combinations) => Box::new(GridOptimizer::new(combinations.clone())),
            Plan::Random(params, trials) => {
                Box::new(RandomOptimizer::new(params.clone(), *trials, settings.seed))
            }
            Plan::Cmaes(params) => Box::new(cmaes::CmaEs::new(params.clone(), settings)),
            Plan::Plugin(path, params, config) => {
                let driver = directory.join("plugin_driver.py");
                std::fs::write(&driver, plugin::DRIVER)
                    .map_err(|error| format!("cannot write {}: {error}", driver.display()))?;
                let mut env = template.env.clone();
                env.extend(template.config_env.clone());
                Box::new(plugin::PluginOptimizer::start(
                    &template.python,
                    &driver,
                    path,
                    params.clone(),
                    config,
                    &directory.join("optimizer.log"),
                    &env,
                )?)
            }
        })
    }
}

pub(super) fn plan_optimizer(
    name: &str,
    hyperparams: &[String],
    settings: &OptimizerSettings,
    cwd: &Path,
    config: &serde_json::Value,
) -> Result<Plan, ApiError> {
    let bad =
        |error: studio_core::hyperparam::HyperparamError| ApiError::bad_request(error.to_string());
    let optimizer_params = || -> Result<Vec<OptimizerParam>, ApiError> {
        let params: Vec<OptimizerParam> = hyperparams
            .iter()
            .map(|argument| OptimizerParam::parse(argument))
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        check_unique(params.iter().map(|param| param.name.as_str()))?;
        Ok(params)
    };
    match name {
        "grid" => {
            let params: Vec<_> = hyperparams
                .iter()
                .map(|argument| parse_grid(argument))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            check_unique(params.iter().map(|param| param.name.as_str()))?;
            match grid_size(&params) {
                Some(size) if size <= MAX_GRID => Ok(Plan::Grid(grid_product(&params))),
                _ => Err(ApiError::bad_request(format!(
                    "the grid has more than {MAX_GRID} combinations: use fewer values or the random optimizer"
                ))),
            }
        }
        "random" => Ok(Plan::Random(optimizer_params()?, settings.trials)),
        "cmaes" => Ok(Plan::Cmaes(optimizer_params()?)),
        other => {
            if let Some(trials) = other.strip_prefix("random:") {
                let trials = trials.parse::<usize>().ok().filter(|trials| *trials > 0).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid --optimizer {other:?}: write random:N with a trial count N of at least 1"
                    ))
                })?;
                return Ok(Plan::Random(optimizer_params()?, trials));
            }
            let path = cwd.join(other);
            if !other.ends_with(".py") || !path.is_file() {
                return Err(ApiError::bad_request(format!(
                    "unknown --optimizer {other:?}: use grid, random, random:N, cmaes, or the path of a Python file that defines an Optimizer class"
                )));
            }
            Ok(Plan::Plugin(path, optimizer_params()?, config.clone()))
        }
    }
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ApiError::bad_request(format!(
                "hyperparameter {name} is given twice: give each name one --hyperparam"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_check_names_and_optimizers() {
        let settings = OptimizerSettings::default();
        let cwd = Path::new("/nonexistent");
        let strings = |items: &[&str]| {
            items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>()
        };
        let grid = plan_optimizer(
            "grid",
            &strings(&["a=1,2", "b=1:3"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(grid.total(), Some(6));
        let twice = plan_optimizer(
            "grid",
            &strings(&["a=1", "a=2"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        );
        assert!(twice.is_err());
        let random = plan_optimizer(
            "random:7",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(random.total(), Some(7));
        assert!(plan_optimizer(
            "random:0",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null
        )
        .is_err());
        let unknown = plan_optimizer(
            "bayes",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        );
        assert!(unknown
            .err()
            .unwrap()
            .message
            .contains("unknown --optimizer"));
    }
}
