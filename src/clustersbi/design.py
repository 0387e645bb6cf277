"""Parameter design: scrambled Sobol sequences over the prior box, chunks, splits and seeds.

The design is a pure function of (priors, global seed, index), so any chunk's parameters
can be computed on their own, at DAG time, without a design file (DESIGN.md, principle 3).

* Outer sequence: one scrambled Sobol sequence (scipy.stats.qmc.Sobol) over the outer
  parameters (the cosmology, and in a joint design also the astrophysics). Point ``i`` of
  the sequence is simulation ``i``; drawing more points never changes the first ones.
* Inner sequences (nested design, mls-pinocchio-cnn-field-level section 2.2): for each
  outer point ``i``, an independently scrambled Sobol sequence of ``n_inner`` points over the
  inner (astrophysical, e.g. M-L_X) parameters. Mock ``(i, j)`` shares simulation ``i``'s
  dark matter and has inner parameters ``j``.
* Splits (roles in :data:`SPLITS`) are assigned per outer index from a uniform number hashed
  from (seed, index):
  all mocks of one simulation share a split (no leakage of one simulation's dark matter
  between training and test), and the assignment never changes when the design grows.
* Seeds: every random stream is ``numpy.random.SeedSequence([global_seed, stream, index,
  *extra])``; the stream numbers are fixed below, so a simulation's initial conditions,
  scaling-relation scatter, etc. can be regenerated alone.
* Chunks: chunk ``c`` holds the outer indices ``c * chunk_size ... (c + 1) * chunk_size - 1``
  (fewer in the last chunk).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import qmc

__all__ = [
    "Prior",
    "DesignSpec",
    "SeedStream",
    "derive_seed",
    "simulation_seed",
    "sobol_unit_points",
    "outer_parameters",
    "inner_parameters",
    "assign_split",
    "n_chunks",
    "chunk_indices",
    "chunk_design",
    "chunk_inner_rows",
    "ChunkDesign",
    "priors_by_name",
    "inference_names",
    "prior_box",
    "to_inference_coordinates",
    "SimulationRecord",
    "design_table",
    "SPLITS",
]

#: Split roles (cerardi section 3.1: 32k / 4k / 4k / 8k): the compressor is fitted on ``train``
#: and early-stopped on ``val``; the NPE is fitted on compressions of ``npe`` simulations, which
#: the compressor never saw, and early-stopped on ``npe_val``; ``test`` serves only SBC, TARP
#: and metrics; ``holdout`` simulations are mock observations. New roles go at the end: the
#: assignment compares a hashed number with the cumulative fractions in this order.
SPLITS = ("train", "val", "test", "holdout", "npe", "npe_val")


class SeedStream:
    """Stream identifiers mixed into every derived seed (never renumber these)."""

    OUTER_SOBOL = 0
    INNER_SOBOL = 1
    SPLIT = 2
    SIMULATION = 3
    SCALING_SCATTER = 4
    LIGHTCONE = 5
    NETWORK = 6
    #: one lightcone slab's initial conditions: (simulation, lightcone, slab)
    SLAB = 7
    #: observational noise of the X-ray maps: (simulation, lightcone, slab; n_slabs = the summed map)
    XRAY_NOISE = 8
    ANALYTIC_MOCK = 9  # analytic mock XOD draw: (index); its exact-posterior chain: (index, 1)
    #: cluster images: the halo sample (0), one cluster's model and noise (1, cluster_id), the
    #: image networks' initialisations and batches (2, network, fold)
    CLUSTER_IMAGES = 10
    #: the noisy mass proxy of the catalogue features: (simulation, inner point)
    MASS_PROXY = 11
    #: LDL training boxes and network initialisations (kept apart from the design's streams)
    LDL_TRAINING = 100
    #: U-Net mass maps: the cluster train/val/test split (cluster_id) and each variant's
    #: weights, batches and augmentation (variant index)
    UNET_SPLIT = 200
    UNET_NETWORK = 201


def derive_seed(global_seed: int, stream: int, *indices: int) -> int:
    """A 32-bit seed from (global seed, stream, indices) via numpy's SeedSequence.

    SeedSequence hashes its entropy, so neighbouring indices give unrelated seeds.
    """
    entropy = [int(global_seed), int(stream), *(int(i) for i in indices)]
    if any(v < 0 for v in entropy):
        raise ValueError(f"seed components must be non-negative, got {entropy}")
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def simulation_seed(global_seed: int, index: int) -> int:
    """Seed of simulation ``index``'s initial conditions: ``derive_seed(seed, SIMULATION, index)``."""
    return derive_seed(global_seed, SeedStream.SIMULATION, index)


@dataclass(frozen=True)
class Prior:
    """One parameter's prior: a uniform or log-uniform distribution on [low, high].

    ``loguniform`` means ln(x) is uniform on [ln low, ln high]; inference then works in
    ln(x) (see :meth:`to_inference`), where the prior is a box.
    """

    name: str
    label: str
    distribution: Literal["uniform", "loguniform"]
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"prior '{self.name}': low ({self.low}) must be < high ({self.high})")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError(f"prior '{self.name}': a loguniform prior needs low > 0, got {self.low}")
        if self.distribution not in ("uniform", "loguniform"):
            raise ValueError(f"prior '{self.name}': unknown distribution '{self.distribution}'")

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> "Prior":
        return cls(
            name=str(entry["name"]),
            label=str(entry["label"]),
            distribution=entry["distribution"],
            low=float(entry["low"]),
            high=float(entry["high"]),
        )

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map u in [0, 1) to the parameter value (inverse CDF)."""
        u = np.asarray(u, dtype=float)
        if self.distribution == "uniform":
            return self.low + u * (self.high - self.low)
        return np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))

    def to_inference(self, x: np.ndarray) -> np.ndarray:
        """The coordinate in which the prior is uniform (x, or ln x for loguniform)."""
        x = np.asarray(x, dtype=float)
        return np.log(x) if self.distribution == "loguniform" else x

    def from_inference(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        return np.exp(y) if self.distribution == "loguniform" else y

    @property
    def inference_bounds(self) -> tuple[float, float]:
        lo, hi = self.to_inference(np.array([self.low, self.high]))
        return float(lo), float(hi)


@dataclass(frozen=True)
class DesignSpec:
    """Everything the design depends on (a pure function of this and the index).

    Attributes:
        outer: priors sampled by the outer Sobol sequence (one point per simulation).
        inner: priors sampled per simulation by inner sequences (empty: no nesting).
        n_simulations: number of outer points (dark-matter simulations).
        n_inner: inner points per simulation (1 when ``inner`` is empty).
        chunk_size: simulations per chunk (per job).
        seed: the global seed.
        split_fractions: fraction per split, in the order of :data:`SPLITS`; sums to 1.
    """

    outer: tuple[Prior, ...]
    inner: tuple[Prior, ...]
    n_simulations: int
    n_inner: int
    chunk_size: int
    seed: int
    split_fractions: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.n_simulations < 1:
            raise ValueError(f"design.n_simulations must be >= 1, got {self.n_simulations}")
        if self.chunk_size < 1:
            raise ValueError(f"design.chunk_size must be >= 1, got {self.chunk_size}")
        if self.n_inner < 1:
            raise ValueError(f"design.n_inner must be >= 1, got {self.n_inner}")
        if not self.inner and self.n_inner != 1:
            raise ValueError("design.n_inner > 1 needs inner (astrophysics) priors with design.nested: true")
        if not math.isclose(sum(self.split_fractions), 1.0, abs_tol=1e-9):
            raise ValueError(f"design.splits must sum to 1, got {sum(self.split_fractions)}")
        names = [p.name for p in self.outer + self.inner]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in priors: {names}")

    @property
    def priors(self) -> tuple[Prior, ...]:
        return self.outer + self.inner

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.priors]

    @property
    def n_mocks(self) -> int:
        return self.n_simulations * self.n_inner

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DesignSpec":
        """Build from the validated config (sections ``seed``, ``design``, ``priors``)."""
        design = config["design"]
        cosmo = tuple(Prior.from_mapping(p) for p in config["priors"]["cosmology"])
        astro = tuple(Prior.from_mapping(p) for p in config["priors"].get("astrophysics", []))
        nested = bool(design["nested"])
        splits = design["splits"]
        return cls(
            outer=cosmo if nested else cosmo + astro,
            inner=astro if nested else (),
            n_simulations=int(design["n_simulations"]),
            n_inner=int(design["n_inner"]) if nested else 1,
            chunk_size=int(design["chunk_size"]),
            seed=int(config["seed"]),
            split_fractions=tuple(float(splits[s]) for s in SPLITS),
        )


def sobol_unit_points(n_dim: int, seed: int, start: int, count: int) -> np.ndarray:
    """Points ``start .. start + count - 1`` of a scrambled Sobol sequence in [0, 1)^n_dim.

    The scrambling is fixed by ``seed``, so the sequence is the same whatever ``start`` and
    ``count``: the first N points never change when more are drawn.
    """
    if n_dim < 1:
        return np.zeros((count, 0))
    engine = qmc.Sobol(d=n_dim, scramble=True, seed=np.random.default_rng(seed))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        # scipy warns that n not a power of 2 loses the balance property of the full set;
        # chunks of an extensible sequence are by design not powers of 2.
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(count)


def _to_values(priors: Sequence[Prior], unit: np.ndarray) -> np.ndarray:
    return np.column_stack([p.from_unit(unit[:, d]) for d, p in enumerate(priors)]) if priors else unit


def outer_parameters(spec: DesignSpec, start: int, stop: int) -> np.ndarray:
    """(stop - start, n_outer) outer parameter values of simulations ``start .. stop - 1``."""
    unit = sobol_unit_points(len(spec.outer), derive_seed(spec.seed, SeedStream.OUTER_SOBOL), start, stop - start)
    return _to_values(spec.outer, unit)


def inner_parameters(spec: DesignSpec, index: int) -> np.ndarray:
    """(n_inner, n_inner_params) inner parameter values of simulation ``index``.

    Each simulation's inner sequence is scrambled with its own seed, so inner designs of
    different simulations are independent.
    """
    return _inner_values(spec.inner, spec.n_inner, spec.seed, index)


def _inner_values(priors: Sequence[Prior], n_inner: int, global_seed: int, index: int) -> np.ndarray:
    unit = sobol_unit_points(len(priors), derive_seed(global_seed, SeedStream.INNER_SOBOL, index), 0, n_inner)
    return _to_values(priors, unit)


def assign_split(global_seed: int, index: int, fractions: Sequence[float]) -> str:
    """Split of simulation ``index``: a hashed uniform number compared with cumulative fractions."""
    u = derive_seed(global_seed, SeedStream.SPLIT, index) / 2.0**32
    edges = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def n_chunks(spec: DesignSpec) -> int:
    return -(-spec.n_simulations // spec.chunk_size)


def chunk_indices(spec: DesignSpec, chunk: int) -> range:
    """Outer (simulation) indices of ``chunk``."""
    if not 0 <= chunk < n_chunks(spec):
        raise ValueError(f"chunk {chunk} outside 0..{n_chunks(spec) - 1}")
    start = chunk * spec.chunk_size
    return range(start, min(start + spec.chunk_size, spec.n_simulations))


def chunk_design(spec: DesignSpec, chunk: int, with_inner: bool = True) -> dict[str, Any]:
    """The chunk's design as plain Python values (for Snakemake ``params``).

    Returns a dict with ``indices``, ``seeds``, ``splits``, ``outer_names``, ``outer``
    (list of rows), ``inner_names``, ``inner`` (per simulation, ``n_inner`` rows) and what
    defines the inner sequences (``inner_priors``, ``n_inner``, ``seed``). Plain lists of
    floats keep Snakemake's params-change detection exact.

    With ``with_inner=False`` the inner rows are left out (``inner`` is empty): building one
    scrambled Sobol engine per simulation costs ~1 ms, too much at DAG time for 10^4-10^5
    simulations. The inner rows are a pure function of the other entries, so a job computes
    them with :func:`chunk_inner_rows`, and a changed inner prior still changes the params.
    """
    idx = chunk_indices(spec, chunk)
    outer = outer_parameters(spec, idx.start, idx.stop)
    design = {
        "chunk": chunk,
        "indices": list(idx),
        "seeds": [simulation_seed(spec.seed, i) for i in idx],
        "splits": [assign_split(spec.seed, i, spec.split_fractions) for i in idx],
        "outer_names": [p.name for p in spec.outer],
        "outer": [[float(v) for v in row] for row in outer],
        "inner_names": [p.name for p in spec.inner],
        "inner_priors": [vars(p).copy() for p in spec.inner],
        "n_inner": spec.n_inner,
        "seed": spec.seed,
        "inner": [],
    }
    if with_inner:
        design["inner"] = chunk_inner_rows(design)
    return design


def chunk_inner_rows(design: Mapping[str, Any]) -> list[list[list[float]]]:
    """Inner parameter rows of every simulation of a chunk design (empty without nesting)."""
    priors = tuple(Prior(**p) for p in design["inner_priors"])
    if not priors:
        return []
    n_inner, seed = int(design["n_inner"]), int(design["seed"])
    return [[[float(v) for v in row] for row in _inner_values(priors, n_inner, seed, i)] for i in design["indices"]]


def design_table(spec: DesignSpec) -> pd.DataFrame:
    """One row per mock: index, simulation, inner, chunk, split, seed, every parameter."""
    rows: list[dict[str, Any]] = []
    for chunk in range(n_chunks(spec)):
        design = chunk_design(spec, chunk)
        for pos, sim in enumerate(design["indices"]):
            outer = dict(zip(design["outer_names"], design["outer"][pos]))
            inner_rows: Iterable = design["inner"][pos] if spec.inner else [[]]
            for j, inner in enumerate(inner_rows):
                rows.append(
                    {
                        "index": sim * spec.n_inner + j,
                        "simulation": sim,
                        "inner": j,
                        "chunk": chunk,
                        "split": design["splits"][pos],
                        "seed": design["seeds"][pos],
                        **outer,
                        **dict(zip(design["inner_names"], inner)),
                    }
                )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SimulationRecord:
    """One simulation of a chunk: what every per-simulation output records about it.

    Attributes:
        index: the simulation's (outer) design index.
        seed: its initial-condition seed (:func:`simulation_seed`).
        split: train / val / test / holdout.
        names: outer parameter names, in design order.
        values: outer parameter values, in the same order.
        inner_names: inner (nested) parameter names; empty without nesting.
        inner: (n_inner, len(inner_names)) inner rows; empty without nesting or when not
            computed.
        simulation: for a mock of a nested design (:meth:`mocks`), its simulation's index
            (``index`` is then the mock's, ``simulation * n_inner + inner_index``); else None.
        inner_index: for such a mock, its inner row; else None.
    """

    index: int
    seed: int
    split: str
    names: tuple[str, ...]
    values: tuple[float, ...]
    inner_names: tuple[str, ...] = ()
    inner: tuple[tuple[float, ...], ...] = ()
    simulation: int | None = None
    inner_index: int | None = None

    def mocks(self) -> list["SimulationRecord"]:
        """The mocks of this simulation: itself without nesting; with ``n_inner`` inner rows, one
        record per row, index ``index * n_inner + j`` (as :func:`design_table`), the simulation's
        seed and split, parameters the outer values then row j. Painting a simulation's particles
        once per mock reuses the dark matter for every feedback draw (design.nested)."""
        if not self.inner:
            return [self]
        n_inner = len(self.inner)
        return [SimulationRecord(self.index * n_inner + j, self.seed, self.split, self.names + self.inner_names,
                                 self.values + tuple(row), simulation=self.index, inner_index=j)
                for j, row in enumerate(self.inner)]

    @property
    def parameters(self) -> dict[str, float]:
        """Outer parameters by name."""
        return dict(zip(self.names, self.values))

    @property
    def theta_names(self) -> list[str]:
        """Names of :attr:`theta`: the outer parameters, then the first inner row's."""
        return list(self.names) + (list(self.inner_names) if self.inner else [])

    @property
    def theta(self) -> list[float]:
        """The parameters of the simulation's first mock (outer values + first inner row)."""
        return list(self.values) + (list(self.inner[0]) if self.inner else [])

    @property
    def group_name(self) -> str:
        """Its HDF5 group in every chunk file."""
        return f"sim_{self.index:06d}"

    def to_attrs(self) -> dict[str, Any]:
        """HDF5 attributes of the simulation's group (the one definition of its metadata)."""
        return {
            "index": int(self.index),
            "seed": int(self.seed),
            "split": str(self.split),
            "param_names": [str(n) for n in self.theta_names],
            "theta": [float(v) for v in self.theta],
            **{f"param_{n}": float(v) for n, v in zip(self.theta_names, self.theta)},
            **({"simulation": int(self.simulation), "inner": int(self.inner_index)} if self.simulation is not None else {}),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "SimulationRecord":
        """Inverse of :meth:`to_attrs` (the first inner row, if any, joins the outer values)."""
        missing = [k for k in ("index", "seed", "split", "param_names", "theta") if k not in attrs]
        if missing:
            raise ValueError(f"simulation attributes lack {missing}")
        return cls(int(attrs["index"]), int(attrs["seed"]), str(attrs["split"]),
                   tuple(str(n) for n in attrs["param_names"]), tuple(float(v) for v in attrs["theta"]))

    def check_stored(self, attrs: Mapping[str, Any], where: str) -> None:
        """Raise ValueError naming ``where`` if stored ``param_<name>`` attributes disagree (a stale file)."""
        for name, value in zip(self.theta_names, self.theta):
            stored = attrs.get(f"param_{name}")
            if stored is not None and not np.isclose(float(stored), value, rtol=1e-6, atol=0.0):
                raise ValueError(f"{where}: simulation {self.index} has param_{name} = {stored} but the design "
                                 f"says {value}; the file is stale")


@dataclass(frozen=True)
class ChunkDesign:
    """A chunk's design, typed; built from the plain rule params of :func:`chunk_design`.

    Snakemake compares the plain params to decide reruns, so they stay the transport; this is
    the one place that reads them.
    """

    chunk: int
    seed: int
    records: tuple[SimulationRecord, ...]
    inner_names: tuple[str, ...]
    n_inner: int

    @classmethod
    def from_params(cls, design: Mapping[str, Any], with_inner: bool = True) -> "ChunkDesign":
        """From :func:`chunk_design`'s dict; computes the inner rows when absent (``with_inner``)."""
        inner = list(design["inner"])
        if with_inner and not inner and design["inner_priors"]:
            inner = chunk_inner_rows(design)
        names = tuple(str(n) for n in design["outer_names"])
        inner_names = tuple(str(n) for n in design["inner_names"])
        records = tuple(
            SimulationRecord(
                index=int(i), seed=int(seed), split=str(split), names=names,
                values=tuple(float(v) for v in row), inner_names=inner_names,
                inner=tuple(tuple(float(v) for v in r) for r in inner[pos]) if inner else (),
            )
            for pos, (i, seed, split, row) in enumerate(zip(design["indices"], design["seeds"], design["splits"], design["outer"]))
        )
        return cls(int(design["chunk"]), int(design["seed"]), records, inner_names, int(design["n_inner"]))

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self.records]

    def record(self, index: int) -> SimulationRecord:
        """The record of simulation ``index``; ValueError if it is not in this chunk."""
        for r in self.records:
            if r.index == index:
                return r
        raise ValueError(f"simulation {index} is not in chunk {self.chunk}")

    def mock_record(self, index: int) -> SimulationRecord:
        """The record of mock ``index`` (:meth:`SimulationRecord.mocks`; without nesting a mock is
        its simulation); ValueError if it is not in this chunk."""
        for r in self.records:
            for mock in r.mocks():
                if mock.index == index:
                    return mock
        raise ValueError(f"mock {index} is not in chunk {self.chunk}")

    def __iter__(self) -> Iterator[SimulationRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


# ----------------------------------------------------------------------------- inference coordinates


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
