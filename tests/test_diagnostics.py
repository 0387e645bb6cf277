"""Expected coverage and local C2ST (clustersbi.calibration) on a linear-Gaussian problem whose
posterior is known: the exact posterior passes both, a deliberately shifted one fails both, an
over-dispersed one reads as conservative. No network is trained: the posteriors are exact
Gaussians behind the interface sbi's diagnostics call (sample, sample_batched, log_prob)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustersbi.calibration import expected_coverage, local_c2st, run_diagnostics

torch.set_num_threads(1)  # small tensors: threads only add overhead

# theta ~ N(0, PRIOR_SD^2 I), x = A theta + N(0, diag(SIG^2)): the posterior is exactly
# N(C A^T S^-1 x, C), C = (A^T S^-1 A + I / PRIOR_SD^2)^-1 (a Gaussian prior: no box truncates it).
A = np.array([[1.0, 0.5], [0.2, 1.0]])
SIG = np.array([0.5, 0.4])
PRIOR_SD = 2.0
COV = np.linalg.inv(A.T @ np.diag(SIG**-2) @ A + np.eye(2) / PRIOR_SD**2)
SD = np.sqrt(np.diag(COV))

N_CAL = 400
#: expected coverage of the exact posterior: |coverage - level| at most this anywhere
COVERAGE_MAX_DEVIATION = 0.1
#: a one-sigma shift must pull the coverage curve below the diagonal by at least this on average
SHIFTED_ATC_MAX = -0.1
#: doubled widths must lift it by at least this
WIDE_ATC_MIN = 0.1
ALPHA = 0.05
#: permutation classifiers of the L-C2ST null (p-values in steps of 1 / N_NULL)
N_NULL = 20


class GaussianPosterior:
    """q(theta | x) = N(C A^T S^-1 x + shift, scale^2 C), with sbi's sampling and log_prob calls."""

    _device = "cpu"

    def __init__(self, shift=(0.0, 0.0), scale=1.0):
        self.shift = torch.tensor(shift, dtype=torch.float32)
        self.cov = torch.tensor(COV * scale**2, dtype=torch.float32)
        self.chol = torch.linalg.cholesky(self.cov)
        self.gain = torch.tensor(COV @ A.T @ np.diag(SIG**-2), dtype=torch.float32)

    def _mean(self, x):
        return torch.atleast_2d(torch.as_tensor(x, dtype=torch.float32)) @ self.gain.T + self.shift

    def sample_batched(self, sample_shape, x, **kwargs):
        mean = self._mean(x)  # (B, 2)
        z = torch.randn(*sample_shape, mean.shape[0], 2)
        return mean + z @ self.chol.T  # (S, B, 2)

    def sample(self, sample_shape, x=None, **kwargs):
        return self.sample_batched(sample_shape, x)[:, 0]

    def log_prob(self, theta, x=None, **kwargs):
        dist = torch.distributions.MultivariateNormal(self._mean(x)[0], covariance_matrix=self.cov)
        return dist.log_prob(torch.as_tensor(theta, dtype=torch.float32))


@pytest.fixture(scope="module")
def calibration_set():
    rng = np.random.default_rng(0)
    theta = PRIOR_SD * rng.standard_normal((N_CAL, 2))
    x = theta @ A.T + rng.normal(size=theta.shape) * SIG
    theta_o = rng.uniform(-1.0, 1.0, size=(2, 2))
    x_o = theta_o @ A.T + rng.normal(size=theta_o.shape) * SIG
    return theta, x, x_o


def test_expected_coverage_tells_exact_shifted_and_wide_posteriors_apart(calibration_set):
    theta, x, _ = calibration_set
    torch.manual_seed(0)
    exact = expected_coverage(GaussianPosterior(), theta, x, n_samples=200, seed=1)
    shifted = expected_coverage(GaussianPosterior(shift=SD), theta, x, n_samples=200, seed=1)
    wide = expected_coverage(GaussianPosterior(scale=2.0), theta, x, n_samples=200, seed=1)
    print(f"\nexpected coverage ATC: exact {exact['atc']:.3f} (max dev {exact['max_deviation']:.3f}), "
          f"shifted {shifted['atc']:.3f}, wide {wide['atc']:.3f}")
    assert exact["max_deviation"] < COVERAGE_MAX_DEVIATION, f"exact posterior: coverage off by {exact['max_deviation']:.3f}"
    assert shifted["atc"] < SHIFTED_ATC_MAX, f"shifted posterior not flagged over-confident: ATC {shifted['atc']:.3f}"
    assert wide["atc"] > WIDE_ATC_MIN, f"over-dispersed posterior not flagged conservative: ATC {wide['atc']:.3f}"
    assert exact["levels"][0] == 0.0 and exact["levels"][-1] == 1.0 and exact["coverage"][-1] == 1.0


def test_local_c2st_rejects_a_shifted_posterior_and_not_the_exact_one(calibration_set):
    theta, x, x_o = calibration_set
    torch.manual_seed(0)
    exact = local_c2st(GaussianPosterior(), theta, x, x_o, n_null=N_NULL, n_eval=500, alpha=ALPHA, seed=2)
    shifted = local_c2st(GaussianPosterior(shift=SD), theta, x, x_o, n_null=N_NULL, n_eval=500, alpha=ALPHA, seed=2)
    print(f"\nL-C2ST p-values: exact {exact['p_value']}, shifted {shifted['p_value']}; statistics exact "
          f"{np.round(exact['statistic'], 4).tolist()}, shifted {np.round(shifted['statistic'], 4).tolist()}")
    assert not any(exact["rejected"]), f"the exact posterior was rejected: p-values {exact['p_value']}"
    assert all(shifted["rejected"]), f"a one-sigma shift went unnoticed: p-values {shifted['p_value']}"
    assert min(shifted["statistic"]) > max(exact["statistic"]), (exact["statistic"], shifted["statistic"])
    assert np.array(exact["null_statistics"]).shape == (2, N_NULL)


def test_diagnostics_follow_their_settings(calibration_set):
    theta, x, x_o = calibration_set
    settings = {"expected_coverage": {"enabled": True, "n_samples": 50, "n_test": 40, "leakage_samples": 100},
                "lc2st": {"enabled": False, "n_cal": 100, "n_null": 2, "n_eval": 50, "alpha": 0.05, "n_holdout": 0}}
    out = run_diagnostics(GaussianPosterior(), theta, x, x_o, settings, seed=0)
    assert out["lc2st"] is None
    assert out["expected_coverage"]["n_test"] == 40 and out["expected_coverage"]["n_samples"] == 50
