"""The compress stage: a neural compressor per training set, and the compressed summaries.

Contract (rules of ``compress.smk``), for a training set ``{summary}``
(``results/training/{summary}.h5``: theta (N, P) in physical units, x, split):

- ``train_compressor``: out ``results/models/compressor/{summary}/``: ``model.pt`` (best
  checkpoint: state_dict + config), ``last.pt`` (resume point), ``normalization.json``,
  ``config.json``, ``history.csv`` (:func:`clustersbi.compress.train.train_compressor`).
- ``compress``: out ``results/compressed/{summary}.h5``: the training-set layout with x = the
  compressor's estimate of theta (N, P) and theta, both in inference coordinates (ln x for
  log-uniform priors, :meth:`clustersbi.design.Prior.to_inference`; names prefixed ``ln_``).
- ``compress_observation``: in ``results/observation/{summary}.h5`` (an observed summary,
  dataset ``x`` (1, ...) binned as the training set, e.g. a survey catalogue's XOD by
  :func:`clustersbi.stages.xod.observed_xod`); out ``results/observation/compressed/{summary}.h5``:
  ``x`` (P,), the compressor's estimate in inference coordinates exactly as ``compress`` maps
  the training rows (the ``file`` observation of :func:`clustersbi.stages.infer.observation_summary`),
  attributes ``param_names`` (inference names), ``observation_file`` and, from a catalogue,
  ``source``, ``n_sources``, ``n_in_range``.
- ``tune_compressor`` (optional): ``results/tuning/{summary}/tuning.json``.

With ``compress.max_memory_mb`` set, a training set whose rows do not fit the bound is trained
on, tuned on and compressed without loading its summaries
(:func:`clustersbi.compress.data.open_training_set`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..compress.data import TrainingSet, open_training_set, write_training_set
from ..compress.train import compress, config_from_dict, load_compressor, train_compressor, tune_compressor
from ..design import inference_names, priors_by_name, to_inference_coordinates

__all__ = ["catalogue_layout", "compressor_config", "train_compressor_stage", "compress_stage", "compress_observation_stage", "tune_compressor_stage"]

logger = logging.getLogger(__name__)


def catalogue_layout(training_file) -> dict[str, Any] | None:
    """The columns a ``catalogue_encoder`` sorts by and joins at the terse layer, from a
    catalogue training set's attributes (``feature_names``, ``sort_feature``,
    ``supplementary_features``: :mod:`clustersbi.stages.catalogue`); None for other training sets."""
    import h5py

    from ..io import h5_read_attrs

    with h5py.File(training_file, "r") as f:
        attrs = h5_read_attrs(f)
    if "feature_names" not in attrs:
        return None
    names = [str(n) for n in attrs["feature_names"]]
    wanted = [str(n) for n in attrs.get("supplementary_features", [])]
    missing = sorted(set(wanted + [str(attrs["sort_feature"])]) - set(names))
    if missing:
        raise ValueError(f"{training_file}: features {missing} named in its attributes are not among {names}")
    return {"sort_column": names.index(str(attrs["sort_feature"])), "supplementary": [names.index(n) for n in wanted]}


def compressor_config(summary: str, compress: Mapping[str, Any], layout: Mapping[str, Any] | None = None):
    """The :class:`CompressorConfig` for a training set named ``a`` or ``a+b+...``.

    One input: the architecture is that input's extractor (``mlp`` inputs feed the
    regression head directly). Several inputs: feature extractors concatenated into the
    head (architecture ``combined``; the papers' CA+PS, CA+CNN, ...). ``layout``: the
    catalogue columns of a ``catalogue_encoder`` (:func:`catalogue_layout`), added to the
    ``encoder`` settings.
    """
    kinds = summary.split("+")
    inputs = {}
    for kind in kinds:
        if kind not in compress["inputs"]:
            raise ValueError(f"compress.inputs has no entry for summary kind {kind!r}")
        inputs[kind] = dict(compress["inputs"][kind])  # every key, schema-filled (null kept: it means something)
    if len(kinds) == 1:
        architecture = inputs[kinds[0]]["extractor"]
        # an mlp compressor is the regression head itself (identity feature extractor)
        inputs[kinds[0]]["extractor"] = "identity" if architecture == "mlp" else architecture
        # a training set with one summary stores it as the array "x" (TrainingSet.summaries)
        inputs = {"x": inputs[kinds[0]]}
    else:
        architecture = "combined"
    # max_memory_mb: how the rows are read, not the compressor (the stages' business)
    settings = {k: v for k, v in compress.items() if k not in ("inputs", "tune", "max_memory_mb")}
    settings["encoder"] = {**dict(compress.get("encoder", {})), **dict(layout or {})}
    return config_from_dict({**settings, "architecture": architecture, "inputs": inputs})


def train_compressor_stage(training_file, summary: str, compress: Mapping[str, Any], model_file,
                           parameters: Sequence[str] | None = None) -> None:
    """Rule ``train_compressor``: train (or resume training) the compressor of one training set.

    ``model_file``: the rule's ``model.pt``; the other outputs (module contract) are written
    beside it. ``parameters``: the inferred parameters (``inference.parameters``; None: all),
    the only ones the compressor estimates.
    """
    with open_training_set(training_file, compress["max_memory_mb"]) as opened:
        ts = opened.select_parameters(parameters)
        for split in ("train", "val"):
            if not ts.mask(split).any():
                raise ValueError(f"{training_file}: no '{split}' rows; grow design.n_simulations or change design.splits")
        config = compressor_config(summary, compress, catalogue_layout(training_file))
        result = train_compressor(ts, config, Path(model_file).parent)
    logger.info("compressor %s: best val loss %.4g at epoch %d", summary, result.best_val_loss, result.best_epoch)


def compress_stage(training_file, model_file, priors: Mapping[str, Sequence[Mapping]], out_file,
                   parameters: Sequence[str] | None = None, max_memory_mb: float | None = None) -> None:
    """Rule ``compress``: compress every row of a training set; theta goes to inference coordinates.

    The compressed summary is the compressor's estimate of theta (physical units, the
    space it was trained in), then mapped like theta, so a log-uniform parameter's summary
    is its estimated logarithm. ``parameters``: the inferred parameters (None: all), as the
    compressor was trained on; the others are dropped from theta (marginalised).
    ``max_memory_mb``: ``compress.max_memory_mb``, the bound on the rows held at once [MiB].
    """
    with open_training_set(training_file, max_memory_mb) as opened:
        ts = opened.select_parameters(parameters)
        comp = load_compressor(Path(model_file).parent, device="auto")
        if list(comp.param_names) != list(ts.param_names):
            raise ValueError(f"{model_file}: the compressor estimates {list(comp.param_names)}, but the inferred parameters "
                             f"are {list(ts.param_names)} (inference.parameters changed: retrain the compressor)")
        by_name = priors_by_name(priors)
        theta, _, _ = to_inference_coordinates(ts.theta, ts.param_names, by_name)
        y = _compressed(comp, ts.x if isinstance(ts, TrainingSet) else ts, ts.param_names, by_name)
    write_training_set(out_file, TrainingSet(theta, y, ts.split, inference_names(ts.param_names, by_name)))


def _compressed(comp, x, param_names: Sequence[str], by_name) -> np.ndarray:
    """(N, P) compressed summaries in inference coordinates of raw summaries x (N, ...)."""
    estimate, _ = compress(comp, x)
    # estimates may stray outside the prior (e.g. a negative estimate of a positive
    # parameter); clip before the log so the summary stays finite.
    safe = np.column_stack([
        np.clip(estimate[:, j], by_name[n].low * 0.5, None) if by_name[n].distribution == "loguniform" else estimate[:, j]
        for j, n in enumerate(param_names)
    ])
    y, _, _ = to_inference_coordinates(safe, param_names, by_name)
    return y


def compress_observation_stage(observation_file, model_file, priors: Mapping[str, Sequence[Mapping]], out_file) -> None:
    """Rule ``compress_observation``: an observed raw summary through the summary's compressor
    (module contract), mapped exactly as :func:`compress_stage` maps the training rows."""
    import h5py

    from ..io import atomic_path, h5_read_attrs, h5_write_attrs

    with h5py.File(observation_file, "r") as f:
        x = np.asarray(f["x"][()], dtype=float)
        source = h5_read_attrs(f)
    comp = load_compressor(Path(model_file).parent, device="auto")
    by_name = priors_by_name(priors)
    y = _compressed(comp, x, comp.param_names, by_name)
    if y.shape[0] != 1:
        raise ValueError(f"{observation_file}: x holds {y.shape[0]} observations, expected a batch of one")
    with atomic_path(out_file) as tmp, h5py.File(tmp, "w") as f:
        f["x"] = y[0]
        h5_write_attrs(f, {"param_names": inference_names(comp.param_names, by_name), "observation_file": str(observation_file),
                           **{k: source[k] for k in ("source", "n_sources", "n_in_range") if k in source}})
    logger.info("observation %s compressed to %s", observation_file, np.array2string(y[0], precision=4))


def tune_compressor_stage(training_file, summary: str, compress: Mapping[str, Any], tuning_file,
                          parameters: Sequence[str] | None = None) -> None:
    """Optuna search over the mls paper's Table 1 space for one training set's compressor.

    Writes ``tuning_file`` (``tuning.json``: every trial and the best configuration), the trials'
    checkpoints beside it; copy the values you adopt into the config's ``compress`` section.
    """
    tune = compress["tune"]
    with open_training_set(training_file, compress["max_memory_mb"]) as opened:
        tune_compressor(
            opened.select_parameters(parameters),
            compressor_config(summary, compress, catalogue_layout(training_file)),
            Path(tuning_file).parent,
            n_trials=int(tune["n_trials"]), n_startup_trials=int(tune["n_startup_trials"]), seed=int(compress["seed"]),
        )
