"""The inference stage per training set: compress, fit the NPE, posteriors and calibration.

Contract (rules in compress.smk and infer.smk), for a training set ``{summary}``
(``results/training/{summary}.h5``: theta (N, P) in physical units, x, split):

  train_compressor -> results/models/compressor/{summary}/ (model.pt, history.csv, ...)
  compress         -> results/compressed/{summary}.h5: the same layout with x = the
                      compressor's estimate of theta (N, P), theta in inference coordinates
  train_npe        -> results/models/npe/{summary}.pt (+ history CSV)
  evaluate_npe     -> results/inference/{summary}/: posterior samples of the test split and
                      of the observation, SBC/TARP calibration, metrics (JSON and CSV)

Inference coordinates: the NPE works where the prior is a box, i.e. ln(x) for parameters
with a log-uniform prior (:meth:`clustersbi.design.Prior.to_inference`); posterior samples
are written in those coordinates with the parameter names prefixed ``ln_`` where that applies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .compress.data import TrainingSet, load_training_set, write_training_set
from .design import Prior
from .io import atomic_path, write_json

__all__ = [
    "DEFAULT_INPUTS",
    "compressor_config",
    "priors_by_name",
    "inference_names",
    "prior_box",
    "to_inference_coordinates",
    "train_compressor_stage",
    "compress_stage",
    "train_npe_stage",
    "observation_summary",
    "evaluate_npe_stage",
    "tune_compressor_stage",
]

logger = logging.getLogger(__name__)

#: How each summary kind enters a compressor (papers' input transforms), unless the
#: config's ``compress.inputs`` overrides it.
DEFAULT_INPUTS: dict[str, dict[str, Any]] = {
    "abundance": {"extractor": "mlp", "transform": "log10p1", "standardize": "per_feature"},
    "power_spectrum": {"extractor": "mlp", "transform": "log10", "standardize": "per_feature"},
    "fields": {"extractor": "cnn3d", "transform": "none", "standardize": "global", "channel_axis": 0},
    "xod": {"extractor": "xod_resnet", "transform": "log10p1", "standardize": "global", "channel_axis": -1},
}


def compressor_config(summary: str, compress: Mapping[str, Any]):
    """The :class:`CompressorConfig` for a training set named ``a`` or ``a+b+...``.

    One input: the architecture is that input's extractor (``mlp`` inputs feed the
    regression head directly). Several inputs: feature extractors concatenated into the
    head (architecture ``combined``; the papers' CA+PS, CA+CNN, ...).
    """
    from .compress.train import config_from_dict

    kinds = summary.split("+")
    inputs = {}
    for kind in kinds:
        spec = dict(DEFAULT_INPUTS.get(kind, {"extractor": "mlp", "transform": "none", "standardize": "global"}))
        spec.update(compress.get("inputs", {}).get(kind, {}))
        inputs[kind] = spec
    if len(kinds) == 1:
        architecture = inputs[kinds[0]]["extractor"]
        # an mlp compressor is the regression head itself (identity feature extractor)
        inputs[kinds[0]]["extractor"] = "identity" if architecture == "mlp" else architecture
        # a training set with one summary stores it as the array "x" (TrainingSet.summaries)
        inputs = {"x": inputs[kinds[0]]}
    else:
        architecture = "combined"
    settings = {k: v for k, v in compress.items() if k not in ("inputs", "tune")}
    return config_from_dict({**settings, "architecture": architecture, "inputs": inputs})


def priors_by_name(priors: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Prior]:
    return {p["name"]: Prior.from_mapping(p) for section in priors.values() for p in section}


def inference_names(param_names: Sequence[str], priors: Mapping[str, Prior]) -> list[str]:
    """Parameter names in inference coordinates (``ln_A`` for a log-uniform ``A``)."""
    return [f"ln_{n}" if priors[n].distribution == "loguniform" else n for n in param_names]


def prior_box(param_names: Sequence[str], priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the prior box in inference coordinates."""
    missing = [n for n in param_names if n not in priors]
    if missing:
        raise ValueError(f"training-set parameters {missing} have no prior in the config")
    bounds = np.array([priors[n].inference_bounds for n in param_names])
    return bounds[:, 0], bounds[:, 1]


def to_inference_coordinates(theta: np.ndarray, param_names: Sequence[str], priors: Mapping[str, Prior]):
    """(theta in inference coordinates, low, high) for the prior box."""
    low, high = prior_box(param_names, priors)
    columns = [priors[n].to_inference(theta[:, j]) for j, n in enumerate(param_names)]
    return np.column_stack(columns), low, high


def train_compressor_stage(training_file, summary: str, compress: Mapping[str, Any], out_dir) -> None:
    """Train (or resume training) the compressor of one training set."""
    from .compress.train import train_compressor

    ts = load_training_set(training_file)
    for split in ("train", "val"):
        if not ts.mask(split).any():
            raise ValueError(f"{training_file}: no '{split}' rows; grow design.n_simulations or change design.splits")
    result = train_compressor(ts, compressor_config(summary, compress), out_dir)
    logger.info("compressor %s: best val loss %.4g at epoch %d", summary, result.best_val_loss, result.best_epoch)


def compress_stage(training_file, model_dir, priors: Mapping[str, Sequence[Mapping]], out_file) -> None:
    """Compress every row of a training set; theta goes to inference coordinates.

    The compressed summary is the compressor's estimate of theta (physical units, the
    space it was trained in), then mapped like theta, so a log-uniform parameter's summary
    is its estimated logarithm.
    """
    from .compress.train import compress, load_compressor

    ts = load_training_set(training_file)
    comp = load_compressor(model_dir, device="auto")
    estimate, _ = compress(comp, ts.x)
    by_name = priors_by_name(priors)
    theta, _, _ = to_inference_coordinates(ts.theta, ts.param_names, by_name)
    # estimates may stray outside the prior (e.g. a negative estimate of a positive
    # parameter); clip before the log so the summary stays finite.
    safe = np.column_stack([
        np.clip(estimate[:, j], by_name[n].low * 0.5, None) if by_name[n].distribution == "loguniform" else estimate[:, j]
        for j, n in enumerate(ts.param_names)
    ])
    y, _, _ = to_inference_coordinates(safe, ts.param_names, by_name)
    write_training_set(out_file, TrainingSet(theta, y, ts.split, inference_names(ts.param_names, by_name)))


def train_npe_stage(compressed_file, priors, infer: Mapping[str, Any], out_file, history_file) -> None:
    """Fit the NPE on the train split, early-stopping on the val split."""
    import pandas as pd

    from .infer import npe_config_from_dict, save_npe, train_npe

    ts = load_training_set(compressed_file)
    original = [n[3:] if n.startswith("ln_") else n for n in ts.param_names]
    low, high = prior_box(original, priors_by_name(priors))
    config = npe_config_from_dict({k: v for k, v in infer.items() if k != "observation"})
    tr, va = ts.subset("train"), ts.subset("val")
    result = train_npe(tr.theta, tr.x, va.theta, va.x, low, high, config, device="auto")
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


def evaluate_npe_stage(compressed_file, npe_file, infer: Mapping[str, Any], out_dir) -> None:
    """Posteriors of the test split and of the observation; calibration and metrics.

    Writes ``samples.h5`` (test samples (B, S, P), truths, observation samples),
    ``calibration.json`` (SBC ranks and KS p-values, TARP), ``metrics.json`` and
    ``metrics.csv`` (per parameter: R^2, MARE, NMB, 68% widths; FoM of Omega_m-sigma_8).
    """
    import h5py
    import pandas as pd

    from .infer import evaluate_test_set, load_npe, run_calibration, sample_posteriors, summarize_observation

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
    calibration = run_calibration(npe.posterior, test.theta, test.x, n_samples=int(infer["n_calibration_samples"]),
                                  seed=seed + 1, param_names=names)
    y_obs, theta_obs, description = observation_summary(ts, infer["observation"])
    obs_samples = sample_posteriors(npe.posterior, y_obs, int(infer["n_posterior_samples"]), seed=seed + 2)[0]
    metrics["observation"] = summarize_observation(obs_samples, names, theta_true=theta_obs)
    metrics["observation"]["description"] = description
    out = Path(out_dir)
    with atomic_path(out / "samples.h5") as tmp, h5py.File(tmp, "w") as f:
        f["test_samples"] = samples.astype(np.float32)
        f["test_theta"] = test.theta
        f["test_compressed"] = test.x
        f["observation_samples"] = obs_samples.astype(np.float32)
        if theta_obs is not None:
            f["observation_theta"] = theta_obs
        f.attrs["param_names"] = list(names)
        f.attrs["observation"] = description
    write_json(out / "calibration.json", calibration)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "metrics.csv") as tmp:
        pd.DataFrame(metrics["per_parameter"]).T.rename_axis("parameter").to_csv(tmp)


def tune_compressor_stage(training_file, summary: str, compress: Mapping[str, Any], out_dir) -> None:
    """Optuna search over the mls paper's Table 1 space for one training set's compressor.

    Writes ``tuning.json`` (best trial and its configuration) in ``out_dir``; copy the values
    you adopt into the config's ``compress`` section.
    """
    from .compress.train import tune_compressor

    tune = compress["tune"]
    tune_compressor(
        load_training_set(training_file), compressor_config(summary, compress), out_dir,
        n_trials=int(tune["n_trials"]), n_startup_trials=int(tune["n_startup_trials"]), seed=int(compress["seed"]),
    )
