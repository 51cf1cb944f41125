//! CMA-ES (covariance matrix adaptation evolution strategy), following
//! Hansen's "The CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772),
//! with its default learning rates. The search runs in a unit cube: 0 is
//! each range's MIN and 1 its MAX (in `log10` for `l` parameters), and
//! candidates outside `[0, 1]` are clipped for evaluation unless the
//! parameter is unbounded (`u`). Fitness is maximised, as in StudioML's
//! plugin, which passed `-fitness` to a minimiser.
//!
//! NOTE: written here rather than taken from the `cmaes` crate because that
//! crate pulls in nalgebra, a long build on small machines; the problems of
//! a hyperparameter search have few dimensions, so plain `Vec` matrices and
//! a Jacobi eigensolver are enough.

// Matrix code reads best with the row and column indexes of the tutorial.
#![allow(clippy::needless_range_loop)]

use super::optimizer::{Candidate, OptimizerSettings};
use crate::metrics::FitnessReport;
use studio_core::hyperparam::OptimizerParam;

pub struct CmaEs {
    params: Vec<OptimizerParam>,
    dimensions: usize,
    lambda: usize,
    weights: Vec<f64>,
    mueff: f64,
    cc: f64,
    cs: f64,
    c1: f64,
    cmu: f64,
    damps: f64,
    chi_n: f64,
    mean: Vec<f64>,
    sigma: f64,
    pc: Vec<f64>,
    ps: Vec<f64>,
    covariance: Vec<Vec<f64>>,
    /// Eigenvectors of `covariance`, as columns.
    basis: Vec<Vec<f64>>,
    /// Square roots of the eigenvalues of `covariance`.
    scales: Vec<f64>,
    generation: usize,
    max_generations: usize,
    target_fitness: f64,
    best_fitness: Option<f64>,
    population: Vec<Vec<f64>>,
    rng: fastrand::Rng,
}

impl CmaEs {
    pub fn new(params: Vec<OptimizerParam>, settings: &OptimizerSettings) -> Self {
        let n: usize = params.iter().map(OptimizerParam::dimensions).sum();
        let nf = n as f64;
        let lambda = settings
            .popsize
            .unwrap_or(4 + (3.0 * nf.ln()).floor() as usize)
            .max(2);
        let mu = (lambda / 2).max(1);
        let raw: Vec<f64> = (0..mu)
            .map(|index| (mu as f64 + 0.5).ln() - ((index + 1) as f64).ln())
            .collect();
        let total: f64 = raw.iter().sum();
        let weights: Vec<f64> = raw.iter().map(|weight| weight / total).collect();
        let mueff = 1.0 / weights.iter().map(|weight| weight * weight).sum::<f64>();
        let cc = (4.0 + mueff / nf) / (nf + 4.0 + 2.0 * mueff / nf);
        let cs = (mueff + 2.0) / (nf + mueff + 5.0);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mueff);
        let cmu = (1.0 - c1).min(2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nf + 2.0).powi(2) + mueff));
        let damps = 1.0 + 2.0 * (((mueff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + cs;
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        let mut rng = settings
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let mean = params
            .iter()
            .flat_map(|param| {
                let random = param.random_init;
                (0..param.dimensions()).map(move |_| random)
            })
            .map(|random| if random { rng.f64() } else { 0.5 })
            .collect();
        Self {
            params,
            dimensions: n,
            lambda,
            weights,
            mueff,
            cc,
            cs,
            c1,
            cmu,
            damps,
            chi_n,
            mean,
            sigma: settings.sigma0,
            pc: vec![0.0; n],
            ps: vec![0.0; n],
            covariance: identity(n),
            basis: identity(n),
            scales: vec![1.0; n],
            generation: 0,
            max_generations: settings.generations,
            target_fitness: settings.fitness,
            best_fitness: None,
            population: Vec::new(),
            rng,
        }
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller transform; 1 - f64() lies in (0, 1], so ln is finite.
        let radius = (-2.0 * (1.0 - self.rng.f64()).ln()).sqrt();
        radius * (std::f64::consts::TAU * self.rng.f64()).cos()
    }

    fn to_candidate(&self, point: &[f64]) -> Candidate {
        let mut values = Vec::with_capacity(self.params.len());
        let mut offset = 0;
        for param in &self.params {
            let slice = &point[offset..offset + param.dimensions()];
            values.push(slice.iter().map(|unit| param.from_unit(*unit)).collect());
            offset += param.dimensions();
        }
        Candidate::from_values(&self.params, &values)
    }

    /// Number of generations whose fitness has been reported.
    pub fn generation(&self) -> usize {
        self.generation
    }
}

impl super::optimizer::Optimizer for CmaEs {
    fn ask(&mut self) -> Result<Vec<Candidate>, String> {
        let reached = self
            .best_fitness
            .is_some_and(|best| best >= self.target_fitness);
        if self.generation >= self.max_generations || reached {
            return Ok(Vec::new());
        }
        let n = self.dimensions;
        self.population.clear();
        for _ in 0..self.lambda {
            let z: Vec<f64> = (0..n).map(|_| self.normal()).collect();
            let point: Vec<f64> = (0..n)
                .map(|row| {
                    let step: f64 = (0..n)
                        .map(|column| self.basis[row][column] * self.scales[column] * z[column])
                        .sum();
                    self.mean[row] + self.sigma * step
                })
                .collect();
            self.population.push(point);
        }
        Ok(self
            .population
            .iter()
            .map(|point| self.to_candidate(point))
            .collect())
    }

    fn tell(&mut self, reports: &[FitnessReport]) -> Result<(), String> {
        if reports.len() != self.population.len() {
            return Err(format!(
                "CMA-ES expected {} fitness values, got {}",
                self.population.len(),
                reports.len()
            ));
        }
        let n = self.dimensions;
        let reported: Vec<f64> = reports.iter().filter_map(|report| report.fitness).collect();
        if reported.is_empty() {
            return Err(
                "no experiment of the generation printed a `fitness: X` line: print one at the end of the script".into(),
            );
        }
        // An experiment without fitness ranks below every reported one.
        let worst = reported.iter().copied().fold(f64::INFINITY, f64::min);
        let fitness: Vec<f64> = reports
            .iter()
            .map(|report| report.fitness.unwrap_or(worst - worst.abs() - 1.0))
            .collect();
        let generation_best = reported.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.best_fitness = Some(
            self.best_fitness
                .map_or(generation_best, |best| best.max(generation_best)),
        );

        let mut order: Vec<usize> = (0..fitness.len()).collect();
        order.sort_by(|left, right| fitness[*right].total_cmp(&fitness[*left]));
        let selected: Vec<&Vec<f64>> = order
            .iter()
            .take(self.weights.len())
            .map(|index| &self.population[*index])
            .collect();

        let old_mean = self.mean.clone();
        self.mean = (0..n)
            .map(|row| {
                selected
                    .iter()
                    .zip(&self.weights)
                    .map(|(point, weight)| weight * point[row])
                    .sum()
            })
            .collect();
        let mean_step: Vec<f64> = (0..n)
            .map(|row| (self.mean[row] - old_mean[row]) / self.sigma)
            .collect();

        // C^(-1/2) * mean_step = B * diag(1/scales) * B^T * mean_step.
        let rotated: Vec<f64> = (0..n)
            .map(|column| {
                (0..n)
                    .map(|row| self.basis[row][column] * mean_step[row])
                    .sum::<f64>()
                    / self.scales[column]
            })
            .collect();
        let whitened: Vec<f64> = (0..n)
            .map(|row| {
                (0..n)
                    .map(|column| self.basis[row][column] * rotated[column])
                    .sum()
            })
            .collect();
        let cs_factor = (self.cs * (2.0 - self.cs) * self.mueff).sqrt();
        for row in 0..n {
            self.ps[row] = (1.0 - self.cs) * self.ps[row] + cs_factor * whitened[row];
        }
        let ps_norm = norm(&self.ps);
        let generations = (self.generation + 1) as f64;
        let hsig = ps_norm / (1.0 - (1.0 - self.cs).powf(2.0 * generations)).sqrt() / self.chi_n
            < 1.4 + 2.0 / (n as f64 + 1.0);
        let hsig = if hsig { 1.0 } else { 0.0 };
        let cc_factor = (self.cc * (2.0 - self.cc) * self.mueff).sqrt();
        for row in 0..n {
            self.pc[row] = (1.0 - self.cc) * self.pc[row] + hsig * cc_factor * mean_step[row];
        }

        let steps: Vec<Vec<f64>> = selected
            .iter()
            .map(|point| {
                (0..n)
                    .map(|row| (point[row] - old_mean[row]) / self.sigma)
                    .collect()
            })
            .collect();
        for row in 0..n {
            for column in 0..n {
                let rank_one = self.pc[row] * self.pc[column]
                    + (1.0 - hsig) * self.cc * (2.0 - self.cc) * self.covariance[row][column];
                let rank_mu: f64 = steps
                    .iter()
                    .zip(&self.weights)
                    .map(|(step, weight)| weight * step[row] * step[column])
                    .sum();
                self.covariance[row][column] = (1.0 - self.c1 - self.cmu)
                    * self.covariance[row][column]
                    + self.c1 * rank_one
                    + self.cmu * rank_mu;
            }
        }
        self.sigma *= ((self.cs / self.damps) * (ps_norm / self.chi_n - 1.0)).exp();

        let (values, vectors) = jacobi_eigen(&self.covariance);
        self.scales = values.iter().map(|value| value.max(1e-20).sqrt()).collect();
        self.basis = vectors;
        self.generation += 1;
        Ok(())
    }

    fn adapts(&self) -> bool {
        true
    }
}

fn identity(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|row| {
            (0..n)
                .map(|column| f64::from(u8::from(row == column)))
                .collect()
        })
        .collect()
}

fn norm(vector: &[f64]) -> f64 {
    vector.iter().map(|value| value * value).sum::<f64>().sqrt()
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by
/// cyclic Jacobi rotations.
fn jacobi_eigen(matrix: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = matrix.len();
    let mut a: Vec<Vec<f64>> = matrix.to_vec();
    let mut vectors = identity(n);
    for _sweep in 0..100 {
        let off_diagonal: f64 = (0..n)
            .flat_map(|row| {
                (0..n)
                    .filter(move |column| *column != row)
                    .map(move |column| (row, column))
            })
            .map(|(row, column)| a[row][column] * a[row][column])
            .sum();
        if off_diagonal < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in vectors.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|index| a[index][index]).collect(), vectors)
}

#[cfg(test)]
mod tests {
    use super::super::optimizer::Optimizer;
    use super::*;

    #[test]
    fn eigen_of_a_symmetric_matrix() {
        let matrix = vec![vec![2.0, 1.0], vec![1.0, 2.0]];
        let (mut values, _) = jacobi_eigen(&matrix);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-9, "{values:?}");
        assert!((values[1] - 3.0).abs() < 1e-9, "{values:?}");
    }

    #[test]
    fn maximises_a_quadratic() {
        let params = vec![
            OptimizerParam::parse("x=0:10").unwrap(),
            OptimizerParam::parse("y=-5:5").unwrap(),
        ];
        let settings = OptimizerSettings {
            popsize: Some(8),
            generations: 60,
            fitness: -1e-6,
            seed: Some(3),
            ..OptimizerSettings::default()
        };
        let mut optimizer = CmaEs::new(params, &settings);
        let mut best = (f64::NEG_INFINITY, 0.0, 0.0);
        loop {
            let batch = optimizer.ask().unwrap();
            if batch.is_empty() {
                break;
            }
            let reports: Vec<FitnessReport> = batch
                .iter()
                .map(|candidate| {
                    let x: f64 = candidate.scalars["x"].parse().unwrap();
                    let y: f64 = candidate.scalars["y"].parse().unwrap();
                    let fitness = -(x - 3.0).powi(2) - (y + 1.0).powi(2);
                    if fitness > best.0 {
                        best = (fitness, x, y);
                    }
                    FitnessReport {
                        fitness: Some(fitness),
                        behavior: None,
                    }
                })
                .collect();
            optimizer.tell(&reports).unwrap();
        }
        assert!((best.1 - 3.0).abs() < 0.01, "{best:?}");
        assert!((best.2 + 1.0).abs() < 0.01, "{best:?}");
        assert!(optimizer.generation() < 60);
    }
}
