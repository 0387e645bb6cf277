"""The infer stage: neural posterior estimation on the compressed summaries, posteriors and calibration.

Contract (rules of ``infer.smk``), for a compressed training set
``results/compressed/{summary}.h5`` (:mod:`clustersbi.stages.compress`):

- ``train_npe``: out ``results/models/npe/{summary}.pt`` (:func:`clustersbi.npe.save_npe`: the
  estimator, or every member of ``infer.ensemble`` and their weights) and its training history
  CSV (epoch, train_loss, val_loss, member); fitted on the ``npe`` rows, stopped on ``npe_val``
  (:data:`clustersbi.design.SPLITS`): the compressor never saw them, so its overfitting cannot
  make the posteriors too narrow.
- ``evaluate_npe``: out ``results/inference/{summary}/``: ``samples.h5`` (test samples
  (B, S, P), truths, observation samples), ``calibration.json`` (SBC ranks and KS p-values,
  TARP; ``expected_coverage`` and ``lc2st`` (:func:`clustersbi.calibration.run_diagnostics`,
  null where disabled); ``ensemble``: members and weights), ``metrics.json`` and
  ``metrics.csv`` (per parameter: R^2, MARE, NMB, 68% widths; FoM of Omega_m-sigma_8;
  ``width_over_prior``: per parameter and for S8, the median over the test posteriors of
  their 68% width over the prior's).
- ``compare_xod_statistics``: in the ``metrics.json`` of two or more XOD statistics (cerardi
  Table 3: 3D, (CR, HR), (z, CR), z); out ``results/inference/xod_statistics.csv``, one row per
  statistic: its marginal, the median test-split FoM of (Omega_m, sigma_8), the mean test-split
  68% half-widths of Omega_m and sigma_8 and their ratio to the prior's, the same for the
  observation, and the median width ratios of every inferred parameter and S8.

Inference coordinates: the NPE works where the prior is a box, i.e. ln(x) for parameters
with a log-uniform prior; posterior samples are in those coordinates, names prefixed ``ln_``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ..calibration import evaluate_test_set, run_calibration, run_diagnostics, summarize_observation, width_over_prior
from ..compress.data import TrainingSet, load_training_set
from ..design import prior_box, priors_by_name
from ..io import atomic_path, write_json
from ..npe import load_npe, npe_config_from_dict, sample_posteriors, save_npe, train_npe_ensemble

__all__ = ["train_npe_stage", "observation_summary", "lc2st_observations", "evaluate_npe_stage", "prior_samples", "prior_sigma68",
           "xod_statistics_table", "compressor_comparison_table"]

#: infer keys that do not change the trained NPE (rule train_npe does not receive them)
EVALUATION_KEYS = ("observation", "diagnostics")

logger = logging.getLogger(__name__)


def train_npe_stage(compressed_file, priors, infer: Mapping[str, Any], out_file, history_file) -> None:
    """Rule ``train_npe``: fit the NPE (or each member of ``infer.ensemble``) on the ``npe`` split
    (compressions of simulations the compressor never saw), early-stopping on ``npe_val``."""
    import pandas as pd

    ts = load_training_set(compressed_file)
    original = [n[3:] if n.startswith("ln_") else n for n in ts.param_names]
    low, high = prior_box(original, priors_by_name(priors))
    config = npe_config_from_dict({k: v for k, v in infer.items() if k not in EVALUATION_KEYS})
    tr, va = ts.subset("npe"), ts.subset("npe_val")
    for split, rows in (("npe", tr), ("npe_val", va)):
        if len(rows.theta) == 0:
            raise ValueError(f"{compressed_file}: no '{split}' rows; grow design.n_simulations or change design.splits")
    result = train_npe_ensemble(tr.theta, tr.x, va.theta, va.x, low, high, config, device="auto")
    save_npe(out_file, result)
    with atomic_path(history_file) as tmp:
        pd.DataFrame(result.history).to_csv(tmp, index=False)


def observation_summary(ts: TrainingSet, observation: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The observation's compressed summary, its true theta if known, and a description.

    ``observation.kind``: ``holdout`` (the holdout mock ``observation.index``, or the first
    holdout mock), or ``file`` (a compressed-summary HDF5 with dataset ``x`` of shape (P,)).
    """
    kind = observation["kind"]
    if kind == "holdout":
        rows = np.flatnonzero(ts.mask("holdout"))
        if rows.size == 0:
            raise ValueError("observation.kind holdout: the design has no holdout simulation")
        pos = int(observation.get("index") or 0)
        if pos >= rows.size:
            raise ValueError(f"observation.index {pos}: only {rows.size} holdout mocks")
        return ts.x[rows[pos]], ts.theta[rows[pos]], f"holdout mock (row {rows[pos]})"
    if kind == "file":
        import h5py

        with h5py.File(observation["file"], "r") as f:
            return np.asarray(f["x"][()], dtype=float).reshape(-1), None, f"file {observation['file']}"
    raise ValueError(f"observation.kind must be holdout or file, got {kind!r}")


def lc2st_observations(ts: TrainingSet, y_obs: np.ndarray, observation: Mapping[str, Any], n_holdout: int) -> tuple[np.ndarray, list[str]]:
    """Where L-C2ST is evaluated: the observation, then up to ``n_holdout`` other holdout mocks.

    Returns (K, d_y) summaries and K descriptions.
    """
    rows = np.flatnonzero(ts.mask("holdout"))
    if observation["kind"] == "holdout" and rows.size:
        rows = np.delete(rows, int(observation.get("index") or 0))
    rows = rows[: int(n_holdout)]
    ys = np.concatenate([np.atleast_2d(y_obs), ts.x[rows]]) if rows.size else np.atleast_2d(y_obs)
    return ys, ["observation"] + [f"holdout row {r}" for r in rows]


#: the parameters cerardi Table 3 compares the XOD statistics on
TABLE3_PARAMETERS = ("Omega_m", "sigma_8")


def prior_samples(names: Sequence[str], priors: Mapping[str, Sequence[Mapping]], n: int, seed: int) -> np.ndarray:
    """(n, len(names)) draws of the prior in inference coordinates (uniform in each box).

    ``names``: inference names (``ln_`` prefixed for log-uniform priors, as the compressed
    training sets name them).
    """
    original = [name[3:] if name.startswith("ln_") else name for name in names]
    low, high = prior_box(original, priors_by_name(priors))
    return np.random.default_rng(seed).uniform(low, high, size=(n, len(names)))


def prior_sigma68(name: str, priors: Mapping[str, Any]) -> float:
    """68% half-width (q84 - q16) / 2 of a parameter's prior, uniform in inference coordinates:
    0.68 (high - low) / 2 of its box (ln x for a log-uniform prior).

    Args:
        name: the parameter's prior name.
        priors: ``{name: Prior}`` (:func:`clustersbi.design.priors_by_name`).
    """
    low, high = prior_box([name], priors)
    return float(0.68 * (high[0] - low[0]) / 2)


def xod_statistics_table(metrics_files: Mapping[str, Any], marginals: Mapping[str, str],
                         priors: Mapping[str, Any], out_csv) -> "pd.DataFrame":
    """Rule ``compare_xod_statistics``: cerardi Table 3 from each statistic's metrics (module contract).

    Args:
        metrics_files: ``{statistic: metrics.json path}`` (:func:`evaluate_npe_stage`).
        marginals: ``{statistic: marginal}`` (:func:`clustersbi.xod.statistic_marginal`).
        priors: the config's ``priors`` section (for the prior widths).
        out_csv: output CSV path.

    Returns:
        The table (also written), one row per statistic in the given order.
    """
    import json

    import pandas as pd

    by_name = priors_by_name(priors)
    rows = []
    for statistic, path in metrics_files.items():
        metrics = json.loads(open(path).read())
        row = {"statistic": statistic, "marginal": marginals[statistic], "fom_test_median": metrics.get("fom_median"),
               "fom_observation": metrics["observation"].get("fom")}
        for name in TABLE3_PARAMETERS:
            if name not in metrics["per_parameter"]:
                raise ValueError(f"{path}: no parameter {name!r}; Table 3 needs {', '.join(TABLE3_PARAMETERS)} inferred")
            prior = prior_sigma68(name, by_name)
            test = float(metrics["per_parameter"][name]["sigma68_mean"])
            obs = float(metrics["observation"]["per_parameter"][name]["sigma68"])
            row.update({f"{name}_sigma68_test": test, f"{name}_sigma68_test_over_prior": test / prior,
                        f"{name}_sigma68_observation": obs, f"{name}_sigma68_prior": prior})
        # the median over the test posteriors of sigma68 / the prior's (S8 included): the
        # informativeness the default run is judged by
        for name, ratio in metrics.get("width_over_prior", {}).items():
            row[f"{name}_width_over_prior_median"] = ratio["ratio_median"]
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def compressor_comparison_table(metrics_files: Mapping[str, Any], calibration_files: Mapping[str, Any],
                                extractors: Mapping[str, str], priors: Mapping[str, Any], out_csv) -> "pd.DataFrame":
    """Rule ``compare_compressors``: one row per inferred summary (the catalogue encoder and the
    compressors it is compared with, on the same design), from their ``metrics.json`` and
    ``calibration.json`` (:func:`evaluate_npe_stage`).

    Columns: summary, extractor, the (Omega_m, sigma_8) FoM (test median, observation) when both
    are inferred, per parameter inferred by every summary the mean test 68% half-width, its ratio
    to the prior's and R^2 of the posterior mean, then the smallest SBC KS p-value over the
    parameters, the TARP ATC and KS p-value.
    """
    import json

    import pandas as pd

    by_name = priors_by_name(priors)
    metrics = {s: json.loads(open(p).read()) for s, p in metrics_files.items()}
    calibration = {s: json.loads(open(p).read()) for s, p in calibration_files.items()}
    common = [n for n in next(iter(metrics.values()))["per_parameter"] if all(n in m["per_parameter"] for m in metrics.values())]
    rows = []
    for summary, m in metrics.items():
        c = calibration[summary]
        row = {"summary": summary, "extractor": extractors[summary], "fom_test_median": m.get("fom_median"),
               "fom_observation": m["observation"].get("fom")}
        for name in common:
            original = name[3:] if name.startswith("ln_") else name
            test = float(m["per_parameter"][name]["sigma68_mean"])
            row.update({f"{name}_sigma68_test": test, f"{name}_sigma68_test_over_prior": test / prior_sigma68(original, by_name),
                        f"{name}_r2": m["per_parameter"][name].get("r2")})
        pvals = [v for v in (c.get("sbc_ks_pvals") or {}).values() if v is not None]
        row.update({"sbc_ks_pval_min": min(pvals) if pvals else None, "tarp_atc": c.get("tarp_atc"),
                    "tarp_ks_pval": c.get("tarp_ks_pval")})
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def evaluate_npe_stage(compressed_file, npe_file, infer: Mapping[str, Any], outputs: Mapping[str, Any],
                       priors: Mapping[str, Sequence[Mapping]] | None = None) -> None:
    """Rule ``evaluate_npe``: posteriors of the test split and of the observation; calibration, metrics.

    ``outputs``: paths by role, ``samples``, ``calibration``, ``metrics``, ``table`` (module contract).
    ``priors``: the config's ``priors`` section; with it ``metrics["width_over_prior"]`` compares the
    test posteriors' 68% widths with the prior's, per parameter and for S_8
    (:func:`clustersbi.calibration.width_over_prior`).
    """
    import h5py
    import pandas as pd

    ts = load_training_set(compressed_file)
    names = ts.param_names
    npe = load_npe(npe_file, device="auto")
    test = ts.subset("test")
    if len(test.theta) == 0:
        raise ValueError(f"{compressed_file}: no test rows for calibration")
    seed = int(infer["seed"])
    samples = sample_posteriors(npe.posterior, test.x, int(infer["n_posterior_samples"]), seed=seed)
    fom = ("Omega_m", "sigma_8") if {"Omega_m", "sigma_8"} <= set(names) else None
    metrics = evaluate_test_set(samples, test.theta, names, fom_params=fom)
    if priors is not None:
        metrics["width_over_prior"] = width_over_prior(samples, prior_samples(names, priors, 20000, seed + 4), names)
    calibration = run_calibration(npe.posterior, test.theta, test.x, n_samples=int(infer["n_calibration_samples"]),
                                  seed=seed + 1, param_names=names)
    y_obs, theta_obs, description = observation_summary(ts, infer["observation"])
    diag = infer["diagnostics"]
    y_lc2st, lc2st_where = lc2st_observations(ts, y_obs, infer["observation"], int(diag["lc2st"]["n_holdout"]))
    calibration.update(run_diagnostics(npe.posterior, test.theta, test.x, y_lc2st, diag, seed=seed + 3))
    if calibration["lc2st"] is not None:
        calibration["lc2st"]["observations"] = lc2st_where
    calibration["ensemble"] = {"members": npe.member_names(), "weights": npe.weights.tolist(),
                               "val_log_probs": [m.val_log_prob for m in npe.members]}
    obs_samples = sample_posteriors(npe.posterior, y_obs, int(infer["n_posterior_samples"]), seed=seed + 2)[0]
    metrics["observation"] = summarize_observation(obs_samples, names, theta_true=theta_obs)
    metrics["observation"]["description"] = description
    with atomic_path(outputs["samples"]) as tmp, h5py.File(tmp, "w") as f:
        f["test_samples"] = samples.astype(np.float32)
        f["test_theta"] = test.theta
        f["test_compressed"] = test.x
        f["observation_samples"] = obs_samples.astype(np.float32)
        if theta_obs is not None:
            f["observation_theta"] = theta_obs
        f.attrs["param_names"] = list(names)
        f.attrs["observation"] = description
    write_json(outputs["calibration"], calibration)
    write_json(outputs["metrics"], metrics)
    with atomic_path(outputs["table"]) as tmp:
        pd.DataFrame(metrics["per_parameter"]).T.rename_axis("parameter").to_csv(tmp)


