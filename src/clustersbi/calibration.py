"""Calibration checks and metrics of posteriors (as sbi's ``diagnostics``): SBC, TARP, regression
metrics and figures of merit.

Metrics (mls eqs. 11-13) use the posterior mean as the prediction: mean absolute relative
error, normalised mean bias, R^2; posterior 68% widths are (q84 - q16) / 2 of the marginals.
Figure of merit of (Omega_m, sigma_8): the cerardi paper's Table 3 writes
``FoM = Cov(Omega_m, sigma_8)^-1``; we use the usual scalar reading, ``1 / sqrt(det Cov)``,
of the 2x2 posterior covariance (the paper's normalisation cannot be recovered from its table).
SBC ranks (Talts et al. 2018) and TARP coverage (Lemos et al. 2023) run through sbi, as do the
expected coverage of highest-posterior-density regions (Hermans et al. 2022: sbi's ``run_sbc``
with the posterior's log-probability as the reduction) and the local classifier two-sample test
(L-C2ST, Linhart et al. 2023: sbi's ``LC2ST``, at chosen observations).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .npe import _as_tensor

__all__ = [
    "posterior_summary",
    "regression_metrics",
    "figure_of_merit",
    "sbc_ranks",
    "run_calibration",
    "expected_coverage",
    "local_c2st",
    "run_diagnostics",
    "evaluate_test_set",
    "summarize_observation",
]

log = logging.getLogger(__name__)


def posterior_summary(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Marginal summaries of samples (..., S, n_params): mean, std, median, q16, q84, sigma68.

    ``sigma68`` = (q84 - q16) / 2, the half-width of the central 68% interval.
    """
    q16, q50, q84 = np.quantile(samples, [0.16, 0.5, 0.84], axis=-2)
    return {
        "mean": samples.mean(axis=-2),
        "std": samples.std(axis=-2, ddof=1),
        "median": q50,
        "q16": q16,
        "q84": q84,
        "sigma68": 0.5 * (q84 - q16),
    }


# --------------------------------------------------------------------------- metrics


def regression_metrics(pred: np.ndarray, true: np.ndarray, param_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-parameter regression metrics of the mls paper.

    - ``mare``: mean absolute relative error, mean |(y_pred - y_true) / y_true| (eq. 11);
    - ``nmb``: normalised mean bias, mean(y_pred - y_true) / mean(y_true) (eq. 12);
    - ``r2``: 1 - sum (y_true - y_pred)^2 / sum (y_true - mean y_true)^2 (eq. 13).

    Args:
        pred, true: (N, n_params). Relative errors are undefined for y_true = 0 (e.g. a
            log-parameter at 0): such rows are skipped in ``mare`` and counted in
            ``n_skipped_zero_truth``.
    """
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != len(param_names):
        raise ValueError(f"pred {pred.shape} and true {true.shape} must both be (N, {len(param_names)})")
    out = {}
    for j, name in enumerate(param_names):
        p, t = pred[:, j], true[:, j]
        nz = t != 0
        mare = float(np.mean(np.abs((p[nz] - t[nz]) / t[nz]))) if nz.any() else float("nan")
        mean_t = float(t.mean())
        nmb = float(np.mean(p - t) / mean_t) if mean_t != 0 else float("nan")
        ss_tot = float(np.sum((t - mean_t) ** 2))
        r2 = 1.0 - float(np.sum((t - p) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
        out[name] = {"r2": r2, "mare": mare, "nmb": nmb, "n_skipped_zero_truth": int((~nz).sum())}
    return out


def figure_of_merit(samples: np.ndarray, i: int, j: int) -> float:
    """FoM = 1 / sqrt(det C) of the 2x2 covariance of parameters (i, j) of samples (S, n_params)."""
    c = np.cov(np.asarray(samples)[:, [i, j]], rowvar=False)
    det = float(np.linalg.det(c))
    return 1.0 / math.sqrt(det) if det > 0 else float("inf")


def sbc_ranks(samples: np.ndarray, theta_true: np.ndarray) -> np.ndarray:
    """Marginal ranks (cerardi eq. A.1, in samples): #(posterior samples < truth).

    Args:
        samples: (B, S, n_params); theta_true: (B, n_params).

    Returns:
        (B, n_params) integer ranks in [0, S]; uniform for a calibrated posterior.
    """
    return (np.asarray(samples) < np.asarray(theta_true)[:, None, :]).sum(axis=1)


def run_calibration(
    posterior,
    theta_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_samples: int = 500,
    seed: int = 0,
    param_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """SBC (Talts et al. 2018) and TARP (Lemos et al. 2023) with ``sbi.diagnostics``.

    Args:
        posterior: an ``sbi`` posterior; theta_test (B, n_params), y_test (B, d_y).
        n_samples: posterior samples per test simulation.

    Returns:
        dict with ``sbc_ranks`` (B, n_params) ints, ``sbc_ks_pvals`` and ``sbc_c2st_ranks``
        per parameter, ``sbc_c2st_dap``, ``tarp_ecp`` and ``tarp_alpha`` (coverage curve),
        ``tarp_atc`` (area to curve, ~0 when calibrated, > 0 over-dispersed, < 0 under) and
        ``tarp_ks_pval``, plus ``n_samples``. Lists, ready for JSON.
    """
    from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

    dev = torch.device(posterior._device) if hasattr(posterior, "_device") else torch.device("cpu")
    th, y = _as_tensor(theta_test, dev), _as_tensor(y_test, dev)
    names = list(param_names) if param_names is not None else [f"theta_{i}" for i in range(th.shape[1])]
    fork = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(seed))
        ranks, dap = run_sbc(th, y, posterior, num_posterior_samples=n_samples, show_progress_bar=False)
        prior_samples = posterior.prior.sample((th.shape[0],))
        checks = check_sbc(ranks.cpu(), prior_samples.cpu(), dap.cpu(), num_posterior_samples=n_samples)
        # sbi's default is n_test // 10 bins, zero for fewer than 10 test simulations
        n_bins = max(2, min(30, th.shape[0] // 10))
        ecp, alpha = run_tarp(
            th, y, posterior, num_posterior_samples=n_samples, num_bins=n_bins, show_progress_bar=False
        )
        atc, ks = check_tarp(ecp.cpu(), alpha.cpu())
    return {
        "n_samples": int(n_samples),
        "n_test": int(th.shape[0]),
        "sbc_ranks": ranks.cpu().numpy().astype(int).tolist(),
        "sbc_ks_pvals": dict(zip(names, map(float, checks["ks_pvals"]))),
        "sbc_c2st_ranks": dict(zip(names, map(float, checks["c2st_ranks"]))),
        "sbc_c2st_dap": float(np.asarray(checks["c2st_dap"]).mean()),
        "tarp_ecp": ecp.cpu().numpy().tolist(),
        "tarp_alpha": alpha.cpu().numpy().tolist(),
        "tarp_atc": float(atc),
        "tarp_ks_pval": float(ks),
    }


def _log_prob_fn(posterior, leakage_samples: int):
    """theta, x -> log q(theta | x) of an sbi posterior (or an ensemble of them), normalised on the prior box.

    The box's normalisation (sbi's leakage correction) is estimated from ``leakage_samples``
    samples per observation; it matters for a mixture, whose members leak differently.
    """
    kwargs = {"leakage_correction_params": {"num_rejection_samples": int(leakage_samples)}}

    def fn(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return posterior.log_prob(theta, x=x, **kwargs)

    return fn


def expected_coverage(
    posterior,
    theta_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_samples: int = 200,
    n_levels: int = 21,
    leakage_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Expected coverage of the highest-posterior-density (HPD) regions (Hermans et al. 2022).

    For each test simulation, the rank of log q(theta_true | y) among log q(theta_s | y) of
    ``n_samples`` posterior samples (sbi's ``run_sbc`` with the log-probability as reduction)
    gives the smallest credibility level whose HPD region holds the truth, h = 1 - rank / S;
    ``coverage[k]`` is the fraction of test simulations with h <= ``levels[k]``. Calibrated:
    coverage = level; below the diagonal: over-confident, above: conservative.

    Args:
        posterior: an ``sbi`` posterior (or ensemble) with ``log_prob``; theta_test
            (B, n_params), y_test (B, d_y).
        n_samples: posterior samples per test simulation.
        n_levels: credibility levels on [0, 1].
        leakage_samples: samples per observation for the prior-box normalisation.

    Returns:
        dict with ``levels``, ``coverage`` (lists), ``hpd_levels`` (B,), ``atc`` (mean of
        coverage - level: > 0 conservative, < 0 over-confident), ``max_deviation``, ``ks_pval``
        (h uniform), ``n_samples``, ``n_test``.
    """
    from scipy.stats import kstest
    from sbi.diagnostics import run_sbc

    dev = torch.device(posterior._device) if hasattr(posterior, "_device") else torch.device("cpu")
    th, y = _as_tensor(theta_test, dev), _as_tensor(y_test, dev)
    fork = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(seed))
        ranks, _ = run_sbc(th, y, posterior, num_posterior_samples=int(n_samples),
                           reduce_fns=_log_prob_fn(posterior, leakage_samples), show_progress_bar=False)
    h = 1.0 - ranks[:, 0].cpu().numpy().astype(float) / float(n_samples)
    levels = np.linspace(0.0, 1.0, int(n_levels))
    coverage = np.array([np.mean(h <= a) for a in levels])
    return {
        "n_samples": int(n_samples),
        "n_test": int(th.shape[0]),
        "levels": levels.tolist(),
        "coverage": coverage.tolist(),
        "hpd_levels": h.tolist(),
        "atc": float(np.mean(coverage - levels)),
        "max_deviation": float(np.max(np.abs(coverage - levels))),
        "ks_pval": float(kstest(h, "uniform").pvalue),
    }


def local_c2st(
    posterior,
    theta_cal: np.ndarray,
    y_cal: np.ndarray,
    y_obs: np.ndarray,
    *,
    n_null: int = 20,
    n_eval: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Local classifier two-sample test (L-C2ST, Linhart et al. 2023) with sbi's ``LC2ST``.

    A classifier (sbi's default, an MLP) learns to tell (theta_i, y_i) of the calibration set
    from (theta_i', y_i), theta_i' one posterior sample given y_i; at an observation y_o its
    statistic is the mean squared distance from 1/2 of its class probabilities over
    ``n_eval`` posterior samples given y_o (0 when q = p there). The p-value compares it with
    ``n_null`` classifiers trained on permuted labels. Cost: (1 + n_null) classifier fits on
    len(theta_cal) points.

    Args:
        posterior: an ``sbi`` posterior; theta_cal (N, n_params), y_cal (N, d_y): simulations
            from the prior predictive; y_obs (K, d_y) the observations to test at.
        alpha: level of the per-observation test.

    Returns:
        dict with per observation ``statistic``, ``p_value``, ``rejected`` and
        ``null_statistics`` (K, n_null), plus ``n_cal``, ``n_null``, ``n_eval``, ``alpha``,
        ``fraction_rejected``.
    """
    from sbi.diagnostics import LC2ST

    dev = torch.device(posterior._device) if hasattr(posterior, "_device") else torch.device("cpu")
    th, y = _as_tensor(theta_cal, "cpu"), _as_tensor(y_cal, "cpu")
    y_o = np.atleast_2d(np.asarray(y_obs, dtype=np.float32))
    fork = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(seed))
        post = posterior.sample_batched((1,), x=y.to(dev), show_progress_bars=False)[0].cpu()
        test = LC2ST(prior_samples=th, xs=y, posterior_samples=post, seed=int(seed) % (2**31), num_trials_null=int(n_null))
        test.train_on_observed_data(verbosity=0).train_under_null_hypothesis(verbosity=0)
        stats, pvals, nulls = [], [], []
        for yo in y_o:
            yo_t = torch.as_tensor(yo)
            so = posterior.sample((int(n_eval),), x=yo_t.to(dev), show_progress_bars=False).cpu()
            stats.append(test.get_statistic_on_observed_data(theta_o=so, x_o=yo_t))
            nulls.append(np.asarray(test.get_statistics_under_null_hypothesis(theta_o=so, x_o=yo_t).scores, dtype=float))
            pvals.append(float(np.mean(stats[-1] < nulls[-1])))
    rejected = [bool(p < alpha) for p in pvals]
    return {
        "n_cal": int(th.shape[0]),
        "n_null": int(n_null),
        "n_eval": int(n_eval),
        "alpha": float(alpha),
        "statistic": [float(v) for v in stats],
        "p_value": pvals,
        "rejected": rejected,
        "null_statistics": [n.tolist() for n in nulls],
        "fraction_rejected": float(np.mean(rejected)) if rejected else float("nan"),
    }


#: fewest calibration simulations L-C2ST runs on (its classifiers hold out a tenth for early stopping)
LC2ST_MIN_CALIBRATION = 20


def run_diagnostics(
    posterior,
    theta_test: np.ndarray,
    y_test: np.ndarray,
    y_obs: np.ndarray,
    settings: Mapping[str, Any],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Expected coverage on the test split and L-C2ST (trained on the test split) at ``y_obs``.

    Args:
        settings: the infer section's ``diagnostics`` (``expected_coverage``: ``enabled``,
            ``n_samples``, ``n_test``, ``leakage_samples``; ``lc2st``: ``enabled``, ``n_cal``,
            ``n_null``, ``n_eval``, ``alpha``): ``n_test`` and ``n_cal`` take the first rows of the
            test split (null: all of them).

    Returns:
        {"expected_coverage": dict | None, "lc2st": dict | None} (None where disabled, or for
        L-C2ST with fewer than :data:`LC2ST_MIN_CALIBRATION` test simulations: then
        ``lc2st_skipped`` says why).
    """
    out: dict[str, Any] = {"expected_coverage": None, "lc2st": None}
    ec, lc = settings["expected_coverage"], settings["lc2st"]
    if ec["enabled"]:
        n = len(theta_test) if ec["n_test"] is None else min(int(ec["n_test"]), len(theta_test))
        out["expected_coverage"] = expected_coverage(posterior, theta_test[:n], y_test[:n], n_samples=int(ec["n_samples"]),
                                                     leakage_samples=int(ec["leakage_samples"]), seed=seed)
    if lc["enabled"]:
        n = len(theta_test) if lc["n_cal"] is None else min(int(lc["n_cal"]), len(theta_test))
        if n < LC2ST_MIN_CALIBRATION:
            out["lc2st_skipped"] = f"{n} test simulations, fewer than the {LC2ST_MIN_CALIBRATION} the classifiers need"
            log.warning("L-C2ST skipped: %s", out["lc2st_skipped"])
            return out
        out["lc2st"] = local_c2st(posterior, theta_test[:n], y_test[:n], y_obs, n_null=int(lc["n_null"]),
                                  n_eval=int(lc["n_eval"]), alpha=float(lc["alpha"]), seed=seed + 1)
    return out


def evaluate_test_set(
    samples: np.ndarray,
    theta_true: np.ndarray,
    param_names: Sequence[str],
    fom_params: tuple[str, str] | None = ("Omega_m", "sigma_8"),
) -> dict[str, Any]:
    """Metrics of the posteriors of B test simulations.

    Args:
        samples: (B, S, n_params) posterior samples; theta_true (B, n_params).
        fom_params: the pair whose FoM is reported (skipped when a name is absent).

    Returns:
        {"per_parameter": {name: {r2, mare, nmb, sigma68_mean, sigma68_rel_mean, std_mean,
        z_rms}}, "fom_median": float | None}: the regression metrics use the posterior mean;
        ``z_rms`` is the rms of (mean - truth) / std (~1 when widths are right).
    """
    summ = posterior_summary(samples)
    metrics = regression_metrics(summ["mean"], theta_true, param_names)
    for j, name in enumerate(param_names):
        t = np.asarray(theta_true)[:, j]
        nz = t != 0
        metrics[name]["sigma68_mean"] = float(summ["sigma68"][:, j].mean())
        metrics[name]["sigma68_rel_mean"] = float(np.mean(summ["sigma68"][nz, j] / np.abs(t[nz]))) if nz.any() else float("nan")
        metrics[name]["std_mean"] = float(summ["std"][:, j].mean())
        z = (summ["mean"][:, j] - t) / summ["std"][:, j]
        metrics[name]["z_rms"] = float(np.sqrt(np.mean(z**2)))
    fom = None
    if fom_params is not None and all(p in param_names for p in fom_params):
        i, j = (list(param_names).index(p) for p in fom_params)
        fom = float(np.median([figure_of_merit(s, i, j) for s in samples]))
    return {"per_parameter": metrics, "fom_median": fom, "fom_params": list(fom_params) if fom is not None else None}


#: the reference matter density of S_8 = sigma_8 sqrt(Omega_m / 0.3)
S8_OMEGA_M_REF = 0.3


def with_s8(samples: np.ndarray, param_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Samples (..., n_params) with S_8 = sigma_8 sqrt(Omega_m / 0.3) appended as a last column.

    Returns the samples unchanged (and the names) when Omega_m or sigma_8 is not inferred.
    """
    names = list(param_names)
    if not {"Omega_m", "sigma_8"} <= set(names):
        return np.asarray(samples), names
    s = np.asarray(samples)
    s8 = s[..., names.index("sigma_8")] * np.sqrt(np.clip(s[..., names.index("Omega_m")], 0.0, None) / S8_OMEGA_M_REF)
    return np.concatenate([s, s8[..., None]], axis=-1), names + ["S8"]


def width_over_prior(samples: np.ndarray, prior_samples: np.ndarray, param_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """How much narrower than the prior the posteriors are, per parameter and for S_8.

    Args:
        samples: (B, S, n_params) posterior samples of B test simulations.
        prior_samples: (S_prior, n_params) samples of the prior, same coordinates.
        param_names: n_params names (S_8 is added when Omega_m and sigma_8 are among them).

    Returns:
        ``{name: {"sigma68_median", "sigma68_prior", "ratio_median", "ratio_q16", "ratio_q84"}}``:
        the 68% half-widths (q84 - q16) / 2 of the posteriors (median over the B) and of the
        prior, and the quantiles over the B of their ratio (1: no information).
    """
    post, names = with_s8(samples, param_names)
    prior, _ = with_s8(np.asarray(prior_samples)[None], param_names)
    width = posterior_summary(post)["sigma68"]  # (B, n)
    width_prior = posterior_summary(prior)["sigma68"][0]  # (n,)
    out = {}
    for j, name in enumerate(names):
        ratio = width[:, j] / width_prior[j]
        q16, q50, q84 = np.quantile(ratio, [0.16, 0.5, 0.84])
        out[name] = {"sigma68_median": float(np.median(width[:, j])), "sigma68_prior": float(width_prior[j]),
                     "ratio_median": float(q50), "ratio_q16": float(q16), "ratio_q84": float(q84)}
    return out


def summarize_observation(
    samples: np.ndarray,
    param_names: Sequence[str],
    theta_true: np.ndarray | None = None,
    fom_params: tuple[str, str] | None = ("Omega_m", "sigma_8"),
) -> dict[str, Any]:
    """Per-parameter summary of one observation's posterior samples (S, n_params).

    Returns {"per_parameter": {name: {mean, std, median, q16, q84, sigma68, sigma68_rel[,
    truth, rank]}}, "fom": float | None} (cerardi Table 3 columns: sigma68 and sigma68 / mean).
    """
    s = np.asarray(samples)
    summ = posterior_summary(s[None])
    out: dict[str, Any] = {"per_parameter": {}, "fom": None}
    for j, name in enumerate(param_names):
        d = {k: float(v[0, j]) for k, v in summ.items()}
        d["sigma68_rel"] = d["sigma68"] / abs(d["mean"]) if d["mean"] != 0 else float("nan")
        if theta_true is not None:
            d["truth"] = float(np.asarray(theta_true)[j])
            d["rank_fraction"] = float(np.mean(s[:, j] < d["truth"]))
        out["per_parameter"][name] = d
    if fom_params is not None and all(p in param_names for p in fom_params):
        i, j = (list(param_names).index(p) for p in fom_params)
        out["fom"] = figure_of_merit(s, i, j)
        out["fom_params"] = list(fom_params)
    return out
