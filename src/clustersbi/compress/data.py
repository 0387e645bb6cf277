"""Training sets for compression and inference, and their input/target transforms.

Contract (written by the summary stages' gather rule, read by the compress and infer stages):
an HDF5 file holding

- ``theta``: float array (N, n_params), the simulation parameters in the design's
  (possibly log-transformed) coordinates;
- ``x``: the summary, either a dataset (N, ...) of any per-sample shape (a vector, a 2D/3D
  histogram, a 3D field with channels), or a group of such datasets, one per named summary
  (``x/abundance``, ``x/pk``, ``x/field``...) for combined compressors;
- ``split``: strings (N,) from {train, val, test, holdout};
- attribute ``param_names``: list of str (n_params).

Input transforms follow the papers: log10(1 + N) for counts, log10 P for spectra (mls
sect. 3.2), then standardisation with training-set statistics (global over samples and bins,
or per feature), or a min-max scaling to [0, 1] (cerardi sect. 3.1). Targets are standardised
per parameter (mls sect. 3.2). Statistics are plain lists so they can be stored as JSON beside
the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import h5py
import numpy as np

from ..design import SPLITS

from clustersbi.io import atomic_path

__all__ = [
    "SPLITS",
    "TrainingSet",
    "load_training_set",
    "write_training_set",
    "InputTransform",
    "fit_input_transform",
    "apply_input_transform",
    "TargetScaler",
    "fit_target_scaler",
]


Summary = np.ndarray | dict[str, np.ndarray]


@dataclass
class TrainingSet:
    """Parameters, summaries and split labels of N simulations.

    Attributes:
        theta: (N, n_params) float64 parameters.
        x: (N, ...) summary array, or a dict name -> (N, ...) array for combined inputs.
        split: (N,) str labels from :data:`SPLITS`.
        param_names: n_params names.
    """

    theta: np.ndarray
    x: Summary
    split: np.ndarray
    param_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.theta = np.asarray(self.theta, dtype=np.float64)
        if self.theta.ndim != 2:
            raise ValueError(f"theta must be (N, n_params), got shape {self.theta.shape}")
        n = self.theta.shape[0]
        self.split = np.asarray(self.split).astype(str)
        if self.split.shape != (n,):
            raise ValueError(f"split must have shape ({n},), got {self.split.shape}")
        bad = sorted(set(self.split) - set(SPLITS))
        if bad:
            raise ValueError(f"split holds unknown labels {bad}; allowed: {SPLITS}")
        for name, arr in self.summaries().items():
            if arr.shape[0] != n:
                raise ValueError(f"x[{name!r}] has {arr.shape[0]} rows, theta has {n}")
        if not self.param_names:
            self.param_names = [f"theta_{i}" for i in range(self.theta.shape[1])]
        if len(self.param_names) != self.theta.shape[1]:
            raise ValueError(
                f"param_names has {len(self.param_names)} names for {self.theta.shape[1]} parameters"
            )

    @property
    def n_params(self) -> int:
        return self.theta.shape[1]

    def summaries(self) -> dict[str, np.ndarray]:
        """The summaries as a dict (a single array is named ``"x"``)."""
        return dict(self.x) if isinstance(self.x, Mapping) else {"x": self.x}

    def mask(self, split: str) -> np.ndarray:
        """Boolean (N,) mask of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.split == split

    def subset(self, split: str) -> "TrainingSet":
        """The rows of one split, as a new TrainingSet."""
        m = self.mask(split)
        x = {k: v[m] for k, v in self.x.items()} if isinstance(self.x, Mapping) else self.x[m]
        return TrainingSet(self.theta[m], x, self.split[m], list(self.param_names))

    def select_parameters(self, names: Sequence[str] | None) -> "TrainingSet":
        """The same rows with only the parameters ``names`` (in that order) in theta.

        The other parameters still vary across the rows, so a compressor and an NPE fitted on
        the result learn the posterior marginalised over them (nuisance parameters). ``None``
        keeps every parameter.
        """
        if names is None:
            return self
        missing = [n for n in names if n not in self.param_names]
        if missing:
            raise ValueError(f"inference.parameters: {missing} not among the training set's parameters {self.param_names}")
        cols = [self.param_names.index(n) for n in names]
        return TrainingSet(self.theta[:, cols], self.x, self.split, [str(n) for n in names])


def load_training_set(path: str | os.PathLike) -> TrainingSet:
    """Read a training set written by :func:`write_training_set` (or the gather rule)."""
    with h5py.File(path, "r") as f:
        for key in ("theta", "x", "split"):
            if key not in f:
                raise ValueError(f"training set {path} lacks the dataset {key!r}")
        theta = f["theta"][()]
        if isinstance(f["x"], h5py.Group):
            x: Summary = {k: f["x"][k][()] for k in sorted(f["x"].keys())}
        else:
            x = f["x"][()]
        split = f["split"][()].astype(str) if f["split"].dtype.kind in "OSU" else f["split"][()]
        split = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in split])
        names = f.attrs.get("param_names", [])
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    return TrainingSet(theta, x, split, names)


def write_training_set(path: str | os.PathLike, ts: TrainingSet) -> None:
    """Write ``ts`` to HDF5 atomically (the layout :func:`load_training_set` reads)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("theta", data=ts.theta)
            if isinstance(ts.x, Mapping):
                g = f.create_group("x")
                for k, v in ts.x.items():
                    g.create_dataset(k, data=np.asarray(v))
            else:
                f.create_dataset("x", data=np.asarray(ts.x))
            f.create_dataset("split", data=np.asarray(ts.split, dtype="S"))
            f.attrs["param_names"] = [str(n) for n in ts.param_names]


# --------------------------------------------------------------------------- transforms

TransformName = Literal["none", "log10p1", "log10"]
StandardizeName = Literal["global", "per_feature", "per_column", "minmax", "none"]


@dataclass
class InputTransform:
    """A fitted input transform: pointwise function, then affine scaling.

    ``y = (f(x) - shift) / scale`` with ``f`` one of identity, log10(1 + x) (counts),
    log10(x) (spectra); ``shift`` and ``scale`` are scalars ("global", "minmax") or arrays of
    the per-sample shape ("per_feature"), stored as nested lists.
    """

    transform: str = "none"
    standardize: str = "global"
    shift: Any = 0.0
    scale: Any = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "transform": self.transform,
            "standardize": self.standardize,
            "shift": np.asarray(self.shift).tolist(),
            "scale": np.asarray(self.scale).tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputTransform":
        return cls(d["transform"], d["standardize"], d["shift"], d["scale"])


def _pointwise(x: np.ndarray, transform: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if transform == "none":
        return x
    if transform == "log10p1":
        if np.any(x <= -1):
            raise ValueError("log10p1 transform needs x > -1 (counts are >= 0)")
        return np.log10(1.0 + x)
    if transform == "log10":
        if np.any(x <= 0):
            raise ValueError("log10 transform needs x > 0 (power spectra are positive)")
        return np.log10(x)
    raise ValueError(f"transform must be one of none, log10p1, log10; got {transform!r}")


def fit_input_transform(
    x_train: np.ndarray, transform: TransformName = "none", standardize: StandardizeName = "global"
) -> InputTransform:
    """Fit the scaling of one summary on the training rows.

    Args:
        x_train: (N_train, ...) summaries.
        transform: pointwise function applied first.
        standardize: "global" (one mean/std over samples and bins, mls sect. 3.2),
            "per_feature" (mean/std per bin), "per_column" (mean/std of each column of the last
            axis over every other axis, NaN entries ignored: a catalogue's features, its
            NaN rows padding), "minmax" (to [0, 1], cerardi sect. 3.1), "none".
    """
    fx = _pointwise(x_train, transform)
    if standardize == "none":
        return InputTransform(transform, standardize, 0.0, 1.0)
    if standardize == "per_column":
        cols = fx.reshape(-1, fx.shape[-1]) if fx.ndim > 1 else fx.reshape(-1, 1)
        finite = np.isfinite(cols)
        n = finite.sum(axis=0)
        safe = np.where(finite, cols, 0.0)
        shift = np.where(n > 0, safe.sum(axis=0) / np.maximum(n, 1), 0.0)
        var = np.where(finite, (cols - shift) ** 2, 0.0).sum(axis=0) / np.maximum(n, 1)
        scale = np.sqrt(var)
        return InputTransform(transform, standardize, shift, np.where(scale > 0, scale, 1.0))
    if standardize == "global":
        shift, scale = float(fx.mean()), float(fx.std())
    elif standardize == "per_feature":
        shift, scale = fx.mean(axis=0), fx.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
    elif standardize == "minmax":
        lo, hi = float(fx.min()), float(fx.max())
        shift, scale = lo, hi - lo
    else:
        raise ValueError(
            f"standardize must be one of global, per_feature, per_column, minmax, none; got {standardize!r}"
        )
    if np.isscalar(scale) and not scale > 0:
        scale = 1.0  # a constant input: leave it centred, do not divide by zero
    return InputTransform(transform, standardize, shift, scale)


def apply_input_transform(x: np.ndarray, t: InputTransform) -> np.ndarray:
    """Apply a fitted transform; returns float32 (N, ...) ready for a network."""
    fx = _pointwise(x, t.transform)
    return ((fx - np.asarray(t.shift)) / np.asarray(t.scale)).astype(np.float32)


@dataclass
class TargetScaler:
    """Per-parameter standardisation of the targets: ``z = (theta - mean) / std``."""

    mean: list[float]
    std: list[float]

    def forward(self, theta: np.ndarray) -> np.ndarray:
        return ((np.asarray(theta) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)

    def inverse_std(self, z_std: np.ndarray) -> np.ndarray:
        """Standard deviations from standardised to physical units."""
        return np.asarray(z_std, dtype=np.float64) * np.asarray(self.std)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(map(float, self.mean)), "std": list(map(float, self.std))}


def fit_target_scaler(theta_train: np.ndarray) -> TargetScaler:
    """Per-parameter mean and std of the training targets (N_train, n_params)."""
    theta_train = np.asarray(theta_train, dtype=np.float64)
    std = theta_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return TargetScaler(theta_train.mean(axis=0).tolist(), std.tolist())
