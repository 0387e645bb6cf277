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

Every numeric dataset is chunked along rows (whole rows, about :data:`CHUNK_BYTES` per chunk),
so a reader can take any set of rows without touching the others. A training set larger than
memory is read on demand (:class:`LazyTrainingSet`, :func:`open_training_set`): theta and split
(small) in memory, the summaries' rows read per block, at most as many as a memory bound holds.

Input transforms follow the papers: log10(1 + N) for counts, log10 P for spectra (mls
sect. 3.2), then standardisation with training-set statistics (global over samples and bins,
or per feature), or a min-max scaling to [0, 1] (cerardi sect. 3.1). Targets are standardised
per parameter (mls sect. 3.2). Statistics are plain lists so they can be stored as JSON beside
the model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import h5py
import numpy as np

from ..design import SPLITS

from clustersbi.io import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "TrainingSet",
    "load_training_set",
    "write_training_set",
    "training_set_writer",
    "CHUNK_BYTES",
    "row_chunks",
    "row_working_bytes",
    "LazyTrainingSet",
    "open_training_set",
    "InputTransform",
    "fit_input_transform",
    "InputTransformFitter",
    "fit_input_transform_blocks",
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
        return _split_mask(self.split, split)

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
        cols = _parameter_columns(self.param_names, names)
        return TrainingSet(self.theta[:, cols], self.x, self.split, [str(n) for n in names])


def _split_mask(split: np.ndarray, name: str) -> np.ndarray:
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    return split == name


def _parameter_columns(param_names: Sequence[str], names: Sequence[str]) -> list[int]:
    missing = [n for n in names if n not in param_names]
    if missing:
        raise ValueError(f"inference.parameters: {missing} not among the training set's parameters {list(param_names)}")
    return [list(param_names).index(n) for n in names]


def _read_rows_meta(f: h5py.File, path) -> tuple[np.ndarray, dict[str, h5py.Dataset], np.ndarray, list[str]]:
    """theta (read), the summary datasets (not read), split and param_names of an open training set."""
    for key in ("theta", "x", "split"):
        if key not in f:
            raise ValueError(f"training set {path} lacks the dataset {key!r}")
    theta = f["theta"][()]
    if isinstance(f["x"], h5py.Group):
        datasets = {k: f["x"][k] for k in sorted(f["x"].keys())}
    else:
        datasets = {"x": f["x"]}
    split = f["split"][()].astype(str) if f["split"].dtype.kind in "OSU" else f["split"][()]
    split = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in split])
    names = f.attrs.get("param_names", [])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    return theta, datasets, split, names


def load_training_set(path: str | os.PathLike) -> TrainingSet:
    """Read a training set written by :func:`write_training_set` (or the gather rule)."""
    with h5py.File(path, "r") as f:
        theta, datasets, split, names = _read_rows_meta(f, path)
        x: Summary = datasets["x"][()] if not isinstance(f["x"], h5py.Group) else {k: d[()] for k, d in datasets.items()}
    return TrainingSet(theta, x, split, names)


#: Target size of one HDF5 chunk of a training set's datasets [bytes]: HDF5's default chunk
#: cache (1 MiB per dataset) then holds a whole chunk, and a 64^3 float32 field (1 MiB) is one.
CHUNK_BYTES = 2**20


def row_chunks(shape: Sequence[int], itemsize: int, target_bytes: int = CHUNK_BYTES) -> tuple[int, ...] | None:
    """HDF5 chunk shape of an (N, ...) dataset: whole rows, as many as fit ``target_bytes``
    (at least one, at most N); None (contiguous) for an empty dataset or a scalar."""
    shape = tuple(int(n) for n in shape)
    if not shape or shape[0] == 0 or 0 in shape[1:]:
        return None
    row_bytes = int(itemsize) * math.prod(shape[1:])
    rows = max(1, min(shape[0], int(target_bytes) // max(row_bytes, 1)))
    return (rows, *shape[1:])


def _create_rows(group: h5py.Group, name: str, data: np.ndarray) -> None:
    data = np.asarray(data)
    group.create_dataset(name, data=data, chunks=row_chunks(data.shape, data.dtype.itemsize))


@contextlib.contextmanager
def training_set_writer(
    path: str | os.PathLike,
    theta: np.ndarray,
    split: np.ndarray,
    param_names: Sequence[str],
    summaries: Mapping[str, tuple[Sequence[int], Any]],
    grouped: bool,
) -> Iterator[tuple[h5py.File, dict[str, h5py.Dataset]]]:
    """Write a training set row by row, never holding its summaries (the layout
    :func:`load_training_set` reads; the file appears, atomically, when the context exits
    without error).

    Args:
        theta: (N, n_params); split: (N,) labels; param_names: n_params names.
        summaries: name -> (per-sample shape, dtype) of each summary.
        grouped: the summaries as datasets of a group ``x`` (combined inputs); otherwise
            ``summaries`` names one summary, written as the dataset ``x``.

    Yields:
        (the open file, for attributes; name -> (N, ...) dataset, chunked along rows, to fill).
    """
    n = np.asarray(theta).shape[0]
    if not grouped and len(summaries) != 1:
        raise ValueError(f"one summary unless grouped, got {sorted(summaries)}")
    ts = TrainingSet(theta, {k: _RowsShape((n, *shape)) for k, (shape, _) in summaries.items()}, split, list(param_names))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _create_rows(f, "theta", ts.theta)
        parent = f.create_group("x") if grouped else f
        datasets = {}
        for k, (shape, dtype) in summaries.items():
            full = (n, *tuple(int(m) for m in shape))
            datasets[k] = parent.create_dataset(k if grouped else "x", shape=full, dtype=dtype,
                                                chunks=row_chunks(full, np.dtype(dtype).itemsize))
        f.create_dataset("split", data=np.asarray(ts.split, dtype="S"))
        f.attrs["param_names"] = [str(n) for n in ts.param_names]
        yield f, datasets


def write_training_set(path: str | os.PathLike, ts: TrainingSet) -> None:
    """Write ``ts`` to HDF5 atomically (the layout :func:`load_training_set` reads), theta and
    the summaries chunked along rows (:func:`row_chunks`)."""
    arrays = {k: np.asarray(v) for k, v in ts.summaries().items()}
    layout = {k: (v.shape[1:], v.dtype) for k, v in arrays.items()}
    with training_set_writer(path, ts.theta, ts.split, ts.param_names, layout, isinstance(ts.x, Mapping)) as (_, datasets):
        for k, v in arrays.items():
            if v.size:
                datasets[k][...] = v


# --------------------------------------------------------------------------- reading on demand


def row_working_bytes(sample_shape: Sequence[int], itemsize: int) -> int:
    """Memory that one row of a summary takes while read and prepared for a network [bytes].

    Per element: two copies of the stored value (the read and its reordering into the asked
    order), three float64 copies (the pointwise transform's input and output and the
    standardised values) and two float32 copies (the network input and its channels-first
    copy). The bound of :class:`LazyTrainingSet` divides by this.
    """
    return math.prod(int(n) for n in sample_shape) * (2 * int(itemsize) + 3 * 8 + 2 * 4)


class LazyTrainingSet:
    """A training set file whose summaries are read on demand, never as a whole.

    theta (N, n_params), split (N,) and param_names are read at opening (small); the summaries
    stay in the file and :meth:`read` returns the rows asked for. At most ``max_rows`` rows are
    held at once, the rows whose working memory (:func:`row_working_bytes`, summed over the
    summaries) fits ``max_memory_mb``; ``max_rows_read`` records the largest read so far.

    Args:
        path: HDF5 file in the :func:`write_training_set` layout.
        max_memory_mb: bound on the memory of the rows held at once [MiB].
    """

    def __init__(self, path: str | os.PathLike, max_memory_mb: float):
        if not max_memory_mb > 0:
            raise ValueError(f"compress.max_memory_mb must be > 0, got {max_memory_mb}")
        self.path = Path(path)
        # no HDF5 chunk cache: reads of whole uncompressed chunks go straight to the caller's
        # array, and the cache's memory would be outside the bound
        self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
        try:
            theta, self._datasets, split, names = _read_rows_meta(self._file, self.path)
            self._meta = TrainingSet(theta, {k: _RowsShape(d.shape) for k, d in self._datasets.items()}, split, names)
        except Exception:
            self._file.close()
            raise
        self.max_memory_mb = float(max_memory_mb)
        self.row_bytes = sum(row_working_bytes(d.shape[1:], d.dtype.itemsize) for d in self._datasets.values())
        self.max_rows = int(self.max_memory_mb * 2**20 // self.row_bytes)
        if self.max_rows < 1:
            self._file.close()
            raise ValueError(
                f"compress.max_memory_mb = {max_memory_mb} MiB cannot hold one row of {self.path} "
                f"({self.row_bytes / 2**20:.3g} MiB while read and prepared)"
            )
        self._largest_read = [0]  # shared with select_parameters views

    theta = property(lambda self: self._meta.theta, doc="(N, n_params) float64 parameters")
    split = property(lambda self: self._meta.split, doc="(N,) split labels")
    param_names = property(lambda self: self._meta.param_names, doc="n_params names")
    n_params = property(lambda self: self._meta.n_params)
    n_rows = property(lambda self: self._meta.theta.shape[0], doc="N")

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each summary (name -> shape; a single array is named ``"x"``)."""
        return {k: tuple(d.shape[1:]) for k, d in self._datasets.items()}

    def mask(self, split: str) -> np.ndarray:
        """Boolean (N,) mask of one split."""
        return _split_mask(self.split, split)

    def select_parameters(self, names: Sequence[str] | None) -> "LazyTrainingSet":
        """The same file with only the parameters ``names`` in theta (as :meth:`TrainingSet.select_parameters`)."""
        if names is None:
            return self
        cols = _parameter_columns(self.param_names, names)
        view = object.__new__(LazyTrainingSet)
        view.__dict__.update(self.__dict__)
        view._meta = TrainingSet(self.theta[:, cols], self._meta.x, self.split, [str(n) for n in names])
        return view

    def read(self, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The summaries of ``rows`` (distinct indices into the file's N rows, any order), in that order.

        Returns name -> (len(rows), ...) arrays of the stored dtype. Raises when ``rows`` holds
        more than ``max_rows`` rows.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size > self.max_rows:
            raise ValueError(
                f"{rows.size} rows asked of {self.path}, compress.max_memory_mb = {self.max_memory_mb} MiB holds {self.max_rows}"
            )
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"rows outside 0..{self.n_rows - 1} asked of {self.path}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        if np.any(np.diff(ordered) == 0):
            raise ValueError(f"repeated rows asked of {self.path}")
        in_order = bool(np.all(order == np.arange(rows.size)))
        if rows.size and ordered[-1] - ordered[0] + 1 == rows.size:
            sel: Any = slice(int(ordered[0]), int(ordered[-1]) + 1)  # one hyperslab: the fastest read
        else:
            sel = ordered  # h5py takes increasing indices only
        out = {}
        for name, ds in self._datasets.items():
            data = ds[sel] if rows.size else np.empty((0, *ds.shape[1:]), ds.dtype)
            out[name] = data if in_order else data[np.argsort(order)]
            del data
        self._largest_read[0] = max(self._largest_read[0], int(rows.size))
        return out

    @property
    def max_rows_read(self) -> int:
        """The most rows one :meth:`read` has held so far (this file and its views)."""
        return self._largest_read[0]

    def blocks(self, rows: Sequence[int] | np.ndarray, block_rows: int | None = None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(rows of the block, :meth:`read` of them) over consecutive blocks of ``rows`` of at most
        ``block_rows`` (default ``max_rows``) rows."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        step = self.max_rows if block_rows is None else min(int(block_rows), self.max_rows)
        for i in range(0, rows.size, step):
            block = rows[i : i + step]
            yield block, self.read(block)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "LazyTrainingSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RowsShape:
    """Stand-in for a summary array in the metadata :class:`TrainingSet` of a lazy set (its
    row count is checked against theta; nothing else is looked at)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)


@contextlib.contextmanager
def open_training_set(path: str | os.PathLike, max_memory_mb: float | None = None) -> Iterator["TrainingSet | LazyTrainingSet"]:
    """A training set for the compressor: in memory, or read on demand under a memory bound.

    ``max_memory_mb`` None: :func:`load_training_set` (everything in memory). A bound [MiB]:
    a :class:`LazyTrainingSet` when the whole set's working memory (N rows times
    :func:`row_working_bytes`) exceeds it, otherwise the set in memory. The file of a lazy set
    is closed on leaving the context.
    """
    if max_memory_mb is None:
        yield load_training_set(path)
        return
    lazy = LazyTrainingSet(path, max_memory_mb)
    if lazy.n_rows <= lazy.max_rows:
        lazy.close()
        yield load_training_set(path)
        return
    log.info("%s: %d rows need %.1f MiB, over compress.max_memory_mb = %g; reading at most %d rows at a time",
             path, lazy.n_rows, lazy.n_rows * lazy.row_bytes / 2**20, lazy.max_memory_mb, lazy.max_rows)
    with lazy:
        yield lazy


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
        y = 1.0 + x
        return np.log10(y, out=y)  # in place: one float64 copy, not two
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
    # one block of the streamed fit: the in-memory and the lazy training sets share the arithmetic
    return fit_input_transform_blocks([x_train], transform, standardize)


class InputTransformFitter:
    """Fits an :class:`InputTransform` by streaming over blocks of training rows.

    The full array is never held: each block (n_b, ...) is transformed pointwise, and its count,
    mean and sum of squared deviations are merged into the running ones (Chan, Golub & LeVeque
    1979, the pairwise update; per bin for "per_feature", per column with NaN ignored for
    "per_column"), or its min and max into the running ones ("minmax"). The result equals
    :func:`fit_input_transform` on the concatenated blocks up to float64 rounding (relative
    differences ~1e-15 per block merge), whatever the blocks' sizes; with one block it is
    :func:`fit_input_transform` itself.
    """

    def __init__(self, transform: TransformName = "none", standardize: StandardizeName = "global"):
        if standardize not in ("global", "per_feature", "per_column", "minmax", "none"):
            raise ValueError(
                f"standardize must be one of global, per_feature, per_column, minmax, none; got {standardize!r}"
            )
        self.transform, self.standardize = transform, standardize
        self.n_rows = 0
        self._count: Any = 0
        self._mean: Any = 0.0
        self._m2: Any = 0.0
        self._lo, self._hi = math.inf, -math.inf

    def update(self, block: np.ndarray) -> None:
        """Add the rows of ``block`` (n_b, ...)."""
        fx = _pointwise(block, self.transform)
        self.n_rows += fx.shape[0] if fx.ndim else 1
        if self.standardize == "none" or fx.size == 0:
            return
        if self.standardize == "minmax":
            self._lo, self._hi = min(self._lo, float(fx.min())), max(self._hi, float(fx.max()))
            return
        if self.standardize == "per_column":
            cols = fx.reshape(-1, fx.shape[-1]) if fx.ndim > 1 else fx.reshape(-1, 1)
            finite = np.isfinite(cols)
            n_b = finite.sum(axis=0)
            mean_b = np.where(n_b > 0, np.where(finite, cols, 0.0).sum(axis=0) / np.maximum(n_b, 1), 0.0)
            m2_b = np.where(finite, (cols - mean_b) ** 2, 0.0).sum(axis=0)
        else:
            axis = None if self.standardize == "global" else 0
            n_b = fx.size if axis is None else fx.shape[0]
            mean_b = fx.mean(axis=axis)
            dev = fx - mean_b
            del fx
            np.square(dev, out=dev)
            m2_b = dev.sum(axis=axis)
        n = self._count + n_b
        delta = mean_b - self._mean
        share = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
        self._mean = self._mean + delta * share
        self._m2 = self._m2 + m2_b + delta**2 * self._count * share
        self._count = n

    def result(self) -> InputTransform:
        """The fitted transform (as :func:`fit_input_transform` returns it)."""
        if self.n_rows == 0:
            raise ValueError("no training rows to fit the input transform on")
        t, std = self.transform, self.standardize
        if std == "none":
            return InputTransform(t, std, 0.0, 1.0)
        if std == "minmax":
            shift, scale = self._lo, self._hi - self._lo
            return InputTransform(t, std, shift, scale if scale > 0 else 1.0)
        n = np.maximum(self._count, 1)
        spread = np.sqrt(self._m2 / n)
        if std == "global":
            scale = float(spread)
            return InputTransform(t, std, float(self._mean), scale if scale > 0 else 1.0)
        shift = np.where(np.asarray(self._count) > 0, self._mean, 0.0) if std == "per_column" else np.asarray(self._mean)
        return InputTransform(t, std, shift, np.where(spread > 0, spread, 1.0))


def fit_input_transform_blocks(
    blocks: Iterable[np.ndarray], transform: TransformName = "none", standardize: StandardizeName = "global"
) -> InputTransform:
    """:func:`fit_input_transform` over an iterable of row blocks (n_b, ...), streaming
    (:class:`InputTransformFitter`): only one block is held at a time."""
    fitter = InputTransformFitter(transform, standardize)
    for block in blocks:
        fitter.update(block)
    return fitter.result()


def apply_input_transform(x: np.ndarray, t: InputTransform) -> np.ndarray:
    """Apply a fitted transform; returns float32 (N, ...) ready for a network."""
    fx = _pointwise(x, t.transform)
    y = fx - np.asarray(t.shift)
    del fx
    y /= np.asarray(t.scale)  # in place: the same values as (fx - shift) / scale, one copy fewer
    return y.astype(np.float32)


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
