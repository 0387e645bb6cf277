"""The ldl stage: staged training of the extended LDL (Cerardi et al., Fig. 1) and gas painting of
lightcone slabs.

Contract
--------
Rule ``train_ldl`` (once per analysis) calls :func:`train_ldl_models`:

  in:  the config sections ``ldl``, ``simulation`` (a_init, n_steps, lightcone), the fiducial
       cosmology, the priors and the global seed. Nothing else: training boxes are simulated here
       (JaxPM, :func:`clustersbi.pm.simulate_box`, CAMB linear power) and their gas targets
       come from the synthetic model (:func:`clustersbi.gas.synthetic_gas`, default) or from
       CAMELS snapshots named in the config (:func:`clustersbi.gas.load_camels_snapshot`).
  out: ``ne.npz`` and ``t.npz`` (:func:`clustersbi.ldl.save_model`: parameters and the
       config that made them), ``history.csv`` (stage, iteration, train and validation loss),
       ``training_summary.json`` (held-out metrics; timings go to the log) and ``heldout.npz`` (the held-out
       box's DM density, target and LDL fields, for the plots).

Rule ``ldl_fidelity`` (once per analysis) calls :func:`ldl_cluster_fidelity`:

  in:  the trained models (their config names the training boxes' size, resolution, cosmology
       and seed), ``results/xray/emission_table.h5``, the config section ``ldl.fidelity``.
  out: ``cluster_fidelity.json`` (paper Fig. 6 on ``ldl.fidelity.n_boxes`` new held-out boxes at
       the fiducial point: key ``cluster_fidelity`` with the CR-M fits of target and LDL, the
       deviation correlation, the prediction error against the natural scatter, LDL / target
       counts above the cuts; :mod:`clustersbi.ldl_fidelity`) and ``heldout_clusters.csv`` (one
       row per cluster: box, mass, count rates and gas properties, target and LDL).
       Apart from ``train_ldl`` so that an edit of the X-ray emission or response (or of
       ``ldl.fidelity``) reruns the check and not the training.

Rule ``paint_gas`` (per chunk) calls :func:`paint_gas_chunk`:

  in:  the chunk's particle file (:mod:`clustersbi.stages.simulate`), the trained models, the chunk design.
  out: ``results/gas/chunk_{chunk}.h5``: the particle file's layout
       ``sim_{index:06d}/lc_{l:02d}/slab_{s:02d}`` with datasets ``ne_cm3`` (comoving electron
       density [cm^-3]; physical = comoving x (1+z)^3) and ``t_k`` (temperature [K]), both float32
       of the slab's mesh shape (n_w, n_w, n_d) (cell convention "centre", :mod:`clustersbi.mesh`),
       the slab attributes copied, and the ``sim_..`` attributes copied (the simulation record,
       ``omega_m`` and ``h``).

Training stages (paper Fig. 1; ``z_base`` = 0.21 by default, as the paper)
---------------------------------------------------------------------------
1. Base LDL on one fiducial box at ``z_base`` (bounded L-BFGS-B, :func:`clustersbi.ldl.fit_ldl`),
   X-ray two-stage fit: n_e first (eq. 5), then T with the true n_e^2 (eq. 6).
2. Conditioning MLPs ``dTheta(theta_sim)`` (eq. 7) for n_e and T on the fiducial box plus
   ``n_varied`` boxes at cosmologies drawn from the priors (scrambled Sobol), all at ``z_base``;
   with the synthetic target, ``n_feedback`` feedback draws are painted on each box
   (:func:`training_points`).
3. Redshifts: the T MLP is copied per redshift node and retrained on the same design points
   simulated at that node (the PM runs store every node as an extra snapshot). The nodes are
   ``n_t_redshifts`` redshifts spread evenly between the centres of the first and last slab of
   the fiducial lightcone. n_e uses one redshift-independent MLP (comoving n_e, as the paper).

Held-out metrics (paper Sect. 3.1, Fig. 5), on an independent fiducial box at ``z_base`` painted
by the *conditioned* models exactly as the slabs are: the correlation of the voxel deviations
of log n_e from the power-law fit of n_e(rho_DM), target vs LDL (the paper reports 0.56 on
CAMELS), the emissivity-weighted error ``sum |eps_LDL - eps_true| / sum eps_true`` with
``eps = n_e^2 T^(1/2)``, the total emissivity error, and (synthetic target only) the response
of dense-voxel n_e to A_AGN1 (0.5 -> 2), target vs LDL.

Resolution: every training box has ``ldl.training.n_mesh``^3 particles and cells of the
lightcone slabs' size ``simulation.lightcone.cell_mpc_h`` (box = n_mesh x cell), because the LDL
filters act in physical k and the output layer on the density at that cell size.

Slab boxes are rectangular ((n_w, n_w, n_d) cells of one size): they are painted by
:func:`clustersbi.ldl.ldl_forward` with a box side per axis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from .. import ldl
from ..cosmology import Cosmology, camb_power, comoving_distance_mpc_h
from ..design import ChunkDesign, Prior, SeedStream, derive_seed, sobol_unit_points
from ..gas import SyntheticGasParams, load_camels_snapshot, synthetic_gas
from ..io import ChunkFile, atomic_path, h5_read_attrs, write_json
from ..ldl_fidelity import (PAPER_DEVIATION_CORRELATION, PAPER_ERROR_OVER_SCATTER, cluster_count_rates,
                            cluster_gas_properties, fidelity_statistics, find_box_clusters)
from ..lightcone import lightcone_slab_geometry
from ..pm import simulate_box
from ..products import read_emission_table

__all__ = [
    "FEEDBACK_NAMES",
    "TrainingBox",
    "ThetaSpace",
    "fiducial_parameters",
    "t_redshift_nodes",
    "training_design",
    "training_points",
    "synthetic_theta",
    "simulate_training_boxes",
    "camels_training_boxes",
    "heldout_metrics",
    "train_ldl_models",
    "CLUSTER_COLUMNS",
    "fidelity_box_seeds",
    "fidelity_boxes",
    "box_cluster_table",
    "ldl_cluster_fidelity",
    "LDLPainter",
    "paint_gas_chunk",
]

logger = logging.getLogger(__name__)

#: Feedback amplitudes of CAMELS/IllustrisTNG, as named in the priors, and the synthetic model's keys.
FEEDBACK_NAMES = {"A_SN1": "a_sn1", "A_SN2": "a_sn2", "A_AGN1": "a_agn1", "A_AGN2": "a_agn2"}


@dataclass
class TrainingBox:
    """One training box: DM particles and the gas target on the same grid.

    Attributes:
        pos_mpc_h: (N, 3) float32 DM positions [Mpc/h] in [0, box).
        ne: mesh float32 target n_e in model units (comoving n_e / ldl.NE_UNIT_CM3).
        t: mesh float32 target T in model units (T / ldl.T_UNIT_K).
        params: simulation parameters by prior name (Omega_m, sigma_8, A_SN1, ...).
        redshift: z of the snapshot.
        box_mpc_h: cubic box side [Mpc/h].
        role: "base", "varied" or "heldout".
    """

    pos_mpc_h: np.ndarray
    ne: np.ndarray
    t: np.ndarray
    params: dict[str, float]
    redshift: float
    box_mpc_h: float
    role: str = "varied"

    @property
    def mesh_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.ne.shape)


@dataclass(frozen=True)
class ThetaSpace:
    """Conditioning inputs of the extended LDL: names, prior bounds and fiducial values.

    Parameters with log-uniform priors enter as ln(x) (:meth:`clustersbi.design.Prior.to_inference`);
    every input is mapped to [-1, 1] by :func:`clustersbi.ldl.normalize_theta`.
    """

    names: tuple[str, ...]
    log: tuple[bool, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    fiducial: dict = field(default_factory=dict)

    @classmethod
    def from_priors(cls, priors: Sequence[Prior], fiducial: Mapping[str, float]) -> "ThetaSpace":
        return cls(
            names=tuple(p.name for p in priors),
            log=tuple(p.distribution == "loguniform" for p in priors),
            lo=tuple(p.inference_bounds[0] for p in priors),
            hi=tuple(p.inference_bounds[1] for p in priors),
            fiducial={k: float(v) for k, v in fiducial.items()},
        )

    def to_config(self) -> dict[str, Any]:
        return {"names": list(self.names), "log": list(self.log), "lo": list(self.lo), "hi": list(self.hi),
                "fiducial": dict(self.fiducial)}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ThetaSpace":
        return cls(tuple(cfg["names"]), tuple(bool(b) for b in cfg["log"]), tuple(cfg["lo"]), tuple(cfg["hi"]),
                   dict(cfg["fiducial"]))

    def normalised(self, params: Mapping[str, float]) -> np.ndarray:
        """(d,) float32 inputs in [-1, 1]; a name missing from ``params`` takes its fiducial value."""
        values = []
        for name, is_log in zip(self.names, self.log):
            if name in params:
                v = float(params[name])
            elif name in self.fiducial:
                v = float(self.fiducial[name])
            else:
                raise ValueError(f"parameter {name!r} is neither in the design nor in the fiducial values")
            values.append(np.log(v) if is_log else v)
        return np.asarray(ldl.normalize_theta(np.asarray(values), self.lo, self.hi), dtype=np.float32)


def fiducial_parameters(cosmology_fiducial: Mapping[str, float], priors: Sequence[Prior]) -> dict[str, float]:
    """Fiducial value of every parameter: the fiducial cosmology, feedback amplitudes 1 (CAMELS
    fiducial), other astrophysical parameters at the geometric (log) or arithmetic mid-prior."""
    out = {k: float(v) for k, v in cosmology_fiducial.items()}
    for p in priors:
        if p.name in out:
            continue
        if p.name in FEEDBACK_NAMES:
            out[p.name] = 1.0
        else:
            out[p.name] = float(p.from_unit(np.array(0.5)))
    return out


def t_redshift_nodes(lightcone: Mapping[str, Any], omega_m: float, n_nodes: int) -> list[float]:
    """Redshift nodes of the per-redshift T MLPs: ``n_nodes`` values evenly spread between the
    centres of the first and last slab of the lightcone at ``omega_m`` (one node: the middle)."""
    if n_nodes < 1:
        raise ValueError(f"ldl.training.n_t_redshifts must be >= 1, got {n_nodes}")
    # the slab centres do not depend on the field of view: any valid field gives the same nodes
    slabs = lightcone_slab_geometry(float(lightcone["z_min"]), float(lightcone["z_max"]), int(lightcone["n_slabs"]),
                                    1.0, omega_m)
    z_first, z_last = slabs[0].z_centre, slabs[-1].z_centre
    if n_nodes == 1:
        return [round(0.5 * (z_first + z_last), 6)]
    return [round(float(z), 6) for z in np.linspace(z_first, z_last, n_nodes)]


def training_design(priors: Sequence[Prior], n_points: int, seed: int, stream: int = 0) -> list[dict[str, float]]:
    """``n_points`` parameter sets from a scrambled Sobol sequence over the priors (seeded by
    ``derive_seed(seed, SeedStream.LDL_TRAINING, 0, stream)``); empty priors give empty sets."""
    if n_points < 0:
        raise ValueError(f"n_points must be >= 0, got {n_points}")
    if n_points == 0:
        return []
    if not priors:
        return [{} for _ in range(n_points)]
    unit = sobol_unit_points(len(priors), derive_seed(seed, SeedStream.LDL_TRAINING, 0, stream), 0, n_points)
    return [{p.name: float(p.from_unit(u[d])) for d, p in enumerate(priors)} for u in unit]


def synthetic_theta(params: Mapping[str, float]) -> dict[str, float]:
    """Keys of :func:`clustersbi.gas.synthetic_gas` from parameters named as the priors
    (feedback amplitudes absent from ``params`` are 1, the fiducial)."""
    out = {"omega_m": float(params["Omega_m"]), "sigma_8": float(params.get("sigma_8", 0.8))}
    for name, key in FEEDBACK_NAMES.items():
        out[key] = float(params.get(name, 1.0))
    return out


def _synthetic_model(ldl_cfg: Mapping[str, Any], omega_b: float):
    syn = ldl_cfg["synthetic"]
    return SyntheticGasParams(
        r_gas0_mpc_h=float(syn["r_gas0_mpc_h"]), delta_dep0=float(syn["delta_dep0"]),
        beta_dep=float(syn["beta_dep"]), r_phi_mpc_h=float(syn["r_phi_mpc_h"]),
        t_igm_k=float(syn["t_igm_k"]), t_fb0_k=float(syn["t_fb0_k"]), omega_b=float(omega_b),
    )


def _gas_box(pos, mesh, box, params, redshift, hubble, model, role) -> TrainingBox:
    g = synthetic_gas(np.asarray(pos), mesh, box, synthetic_theta(params), redshift, hubble=hubble, model=model)
    return TrainingBox(
        pos_mpc_h=np.asarray(pos, np.float32),
        ne=(g.ne_cm3 / ldl.NE_UNIT_CM3).astype(np.float32),
        t=(g.t_k / ldl.T_UNIT_K).astype(np.float32),
        params=dict(params), redshift=float(redshift), box_mpc_h=float(box), role=role,
    )


def training_points(
    priors: Mapping[str, Sequence[Prior]], fiducial: Mapping[str, float], n_varied: int, n_feedback: int, seed: int
) -> list[tuple[str, list[dict[str, float]]]]:
    """The PM runs of the synthetic training set and the parameter sets painted on each.

    One run per entry: ("base", the fiducial point then ``n_feedback - 1`` feedback draws),
    ("heldout", the fiducial point), and ``n_varied`` ("varied", ``n_feedback`` feedback draws
    at one cosmology). Cosmologies and feedback draws come from independent Sobol sequences over
    ``priors["cosmology"]`` and ``priors["astrophysics"]``. Painting several feedback draws on
    the same particles lets the conditioning separate the feedback response of the target from
    the box-to-box scatter of the dark matter, which a handful of boxes could not do otherwise.
    """
    if n_feedback < 1:
        raise ValueError(f"ldl.training.n_feedback must be >= 1, got {n_feedback}")
    if not priors["astrophysics"]:
        n_feedback = 1
    cosmologies = training_design(priors["cosmology"], n_varied, seed, 0)
    feedback = iter(training_design(priors["astrophysics"], n_feedback * (n_varied + 1), seed, 1))
    base = [dict(fiducial)] + [{**fiducial, **next(feedback)} for _ in range(n_feedback - 1)]
    points = [("base", base), ("heldout", [dict(fiducial)])]
    for cosmo in cosmologies:
        points.append(("varied", [{**fiducial, **cosmo, **next(feedback)} for _ in range(n_feedback)]))
    return points


def simulate_training_boxes(
    points: Sequence[tuple[str, Sequence[Mapping[str, float]]]],
    redshifts: Sequence[float],
    ldl_cfg: Mapping[str, Any],
    simulation_cfg: Mapping[str, Any],
    cosmology_fiducial: Mapping[str, float],
    seed: int,
    box_seeds: Sequence[int] | None = None,
) -> list[TrainingBox]:
    """JaxPM boxes at every point and redshift, with synthetic gas targets.

    Args:
        points: (role, parameter sets) per PM run (:func:`training_points`): one run (seed
            ``derive_seed(seed, SeedStream.LDL_TRAINING, 1, i)``) at the cosmology of the first set,
            with a snapshot at every entry of ``redshifts``; every set is painted on it.
        redshifts: snapshot redshifts.
        box_seeds: the runs' seeds instead of the training boxes' (one per point; the
            cluster-fidelity boxes use their own, :func:`fidelity_box_seeds`).

    Returns:
        one :class:`TrainingBox` per run, redshift and parameter set (the first set of a
        "base" run keeps the role "base", its other sets become "varied").
    """
    tr = ldl_cfg["training"]
    n_mesh = int(tr["n_mesh"])
    cell = float(simulation_cfg["lightcone"]["cell_mpc_h"])
    box = n_mesh * cell
    # P(k) up to the mesh corner |k| = sqrt(3) k_Nyquist (CAMB's cost grows with k_max)
    k_h_mpc = np.geomspace(1e-4, 1.1 * np.sqrt(3.0) * np.pi / cell, 256)
    spectra: dict[Cosmology, Any] = {}
    z_sorted = sorted({float(z) for z in redshifts})
    model = _synthetic_model(ldl_cfg, float(cosmology_fiducial["Omega_b"]))
    if box_seeds is not None and len(box_seeds) != len(points):
        raise ValueError(f"{len(box_seeds)} box seeds for {len(points)} points")
    out: list[TrainingBox] = []
    for i, (role, param_sets) in enumerate(points):
        params = param_sets[0]
        cosmo = Cosmology.from_mapping(params, cosmology_fiducial)
        if cosmo not in spectra:
            spectra[cosmo] = camb_power(cosmo, [0.0], k_h_mpc)
        linear = spectra[cosmo]
        box_seed = derive_seed(seed, SeedStream.LDL_TRAINING, 1, i) if box_seeds is None else int(box_seeds[i])
        t0 = time.perf_counter()
        run = simulate_box(
            cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[0], box_mpc_h=box, n_mesh=n_mesh, z_snapshot=z_sorted,
            seed=box_seed, a_init=float(simulation_cfg["a_init"]), n_steps=int(simulation_cfg["n_steps"]),
        )
        for snap in run.snapshots:
            z = 1.0 / snap.a - 1.0
            z_node = min(z_sorted, key=lambda zz: abs(zz - z))
            for j, ps in enumerate(param_sets):
                out.append(_gas_box(snap.positions_mpc_h, (n_mesh,) * 3, box, ps, z_node, cosmo.h, model,
                                    role if j == 0 else "varied"))
        logger.info("LDL training box %d/%d (%s, %s): %.1f s", i + 1, len(points), role,
                    {k: round(v, 3) for k, v in params.items()}, time.perf_counter() - t0)
    return out


def _camels_box(entry: Mapping[str, Any], cell_mpc_h: float, fiducial: Mapping[str, float]) -> TrainingBox:
    """One ``ldl.camels.snapshots`` entry as a :class:`TrainingBox` on the mesh of ``cell_mpc_h``."""
    grid = load_camels_snapshot(entry["files"], cell_mpc_h=cell_mpc_h)
    params = {**fiducial, **{k: float(v) for k, v in entry.get("parameters", {}).items()}}
    return TrainingBox(
        pos_mpc_h=np.asarray(grid.dm_pos_mpc_h, np.float32),
        ne=(grid.ne_cm3 / ldl.NE_UNIT_CM3).astype(np.float32),
        t=(grid.t_k / ldl.T_UNIT_K).astype(np.float32),
        params=params, redshift=float(grid.redshift), box_mpc_h=float(grid.box_mpc_h), role=entry["role"],
    )


def camels_training_boxes(ldl_cfg: Mapping[str, Any], cell_mpc_h: float, fiducial: Mapping[str, float]) -> list[TrainingBox]:
    """Training boxes from the CAMELS snapshots listed in ``ldl.camels.snapshots``.

    Each entry has ``files`` (one snapshot or its pieces), ``role`` (base, varied, heldout) and
    ``parameters`` (the simulation's parameters by prior name; missing ones are fiducial).
    All snapshots must give the same mesh at ``cell_mpc_h`` and the same particle count
    (one CAMELS suite), since the conditioning stage stacks them.
    """
    entries = ldl_cfg["camels"]["snapshots"]
    if not entries:
        raise ValueError("ldl.source is 'camels' but ldl.camels.snapshots is empty")
    out = []
    for i, entry in enumerate(entries):
        out.append(_camels_box(entry, cell_mpc_h, fiducial))
        logger.info("CAMELS snapshot %d/%d: %s, z = %.3f, mesh %s", i + 1, len(entries), entry["role"],
                    out[-1].redshift, out[-1].mesh_shape)
    shapes = {(b.mesh_shape, b.pos_mpc_h.shape[0], b.box_mpc_h) for b in out}
    if len(shapes) != 1:
        raise ValueError(f"ldl.camels.snapshots: boxes differ in (mesh, particles, box): {sorted(shapes)}")
    roles = {b.role for b in out}
    for needed in ("base", "heldout"):
        if needed not in roles:
            raise ValueError(f"ldl.camels.snapshots: no snapshot with role {needed!r}")
    return out


# ----------------------------------------------------------------------------- metrics


def _powerlaw_deviation(rho: np.ndarray, ne: np.ndarray) -> np.ndarray:
    lx, ly = np.log10(rho), np.log10(ne)
    slope, icpt = np.polyfit(lx, ly, 1)
    return ly - (icpt + slope * lx)


def heldout_metrics(rho_over_mean, ne_true, t_true, ne_ldl, t_ldl) -> dict[str, float]:
    """Voxel metrics of painted fields against their target (any consistent units).

    Returns:
        ``deviation_correlation``: correlation of the deviations of log n_e from the power-law
        fit of log n_e vs log rho_DM, target vs LDL (voxels where all are > 0; paper Fig. 5: 0.56);
        ``emissivity_l1``: sum |eps_LDL - eps_true| / sum eps_true with eps = n_e^2 T^(1/2);
        ``emissivity_total``: sum eps_LDL / sum eps_true - 1; ``ne_l1``: sum |dn_e| / sum n_e;
        ``slope_true``/``slope_ldl``: power-law slopes; ``voxel_fraction``: voxels used.
    """
    rho, ne_t, t_t, ne_l, t_l = (np.asarray(a, np.float64).ravel() for a in
                                 (rho_over_mean, ne_true, t_true, ne_ldl, t_ldl))
    ok = (rho > 0) & (ne_t > 0) & (ne_l > 0)
    if ok.sum() < 3:
        raise ValueError(f"only {int(ok.sum())} voxels with positive rho and n_e: no held-out metric")
    dev_t = _powerlaw_deviation(rho[ok], ne_t[ok])
    dev_l = _powerlaw_deviation(rho[ok], ne_l[ok])
    eps_t = ne_t**2 * np.sqrt(np.maximum(t_t, 0.0))
    eps_l = ne_l**2 * np.sqrt(np.maximum(t_l, 0.0))
    return {
        "deviation_correlation": float(np.corrcoef(dev_t, dev_l)[0, 1]),
        "emissivity_l1": float(np.abs(eps_l - eps_t).sum() / eps_t.sum()),
        "emissivity_total": float(eps_l.sum() / eps_t.sum() - 1.0),
        "ne_l1": float(np.abs(ne_l - ne_t).sum() / ne_t.sum()),
        "slope_true": float(np.polyfit(np.log10(rho[ok]), np.log10(ne_t[ok]), 1)[0]),
        "slope_ldl": float(np.polyfit(np.log10(rho[ok]), np.log10(ne_l[ok]), 1)[0]),
        "voxel_fraction": float(ok.mean()),
    }


# ----------------------------------------------------------------------------- painter


class LDLPainter:
    """The trained, conditioned n_e and T models (``ne.npz``, ``t.npz``) as painting functions."""

    def __init__(self, ne_model: str | Path, t_model: str | Path):
        self.ne_params, self.ne_config = ldl.load_model(ne_model)
        self.t_params, self.t_config = ldl.load_model(t_model)
        self.theta = ThetaSpace.from_config(self.ne_config["theta"])
        self.k_nyquist = float(self.ne_config["k_nyquist_h_mpc"])
        self.z_nodes = [float(z) for z in self.t_config["z_nodes"]]
        self.t_floor_k = float(self.t_config["ldl"]["t_floor_k"])

    def params_ne(self, params: Mapping[str, float]):
        """Conditioned n_e LDL parameters (eq. 7) for simulation parameters by prior name."""
        th = self.theta.normalised(params)
        return ldl.conditioned_params(self.ne_params["base"], self.ne_params["mlp"], th, self.k_nyquist)

    def params_t(self, params: Mapping[str, float], redshift: float):
        """Conditioned T LDL parameters, linearly interpolated between the redshift nodes."""
        th = self.theta.normalised(params)
        return ldl.conditioned_params_z(self.t_params["base"], self.t_params["mlps"], self.z_nodes, th,
                                        float(redshift), self.k_nyquist)

    def paint(self, pos_mpc_h, mesh_shape, box_mpc_h, params: Mapping[str, float], redshift: float):
        """(n_e [comoving cm^-3], T [K]) float32 arrays of ``mesh_shape`` for one box.

        T voxels that the ReLU sets below ``ldl.t_floor_k`` are raised to it (they carry
        no X-ray emission in any band; the floor keeps log T defined downstream).
        """
        import jax.numpy as jnp

        shape = tuple(int(n) for n in mesh_shape)
        box = tuple(float(b) for b in np.broadcast_to(np.asarray(box_mpc_h, np.float64), (3,)))
        pos = jnp.asarray(pos_mpc_h, jnp.float32)
        ne = np.asarray(ldl.ldl_forward(self.params_ne(params), pos, shape, box), np.float64) * ldl.NE_UNIT_CM3
        t = np.asarray(ldl.ldl_forward(self.params_t(params, redshift), pos, shape, box), np.float64) * ldl.T_UNIT_K
        return ne.astype(np.float32), np.maximum(t, self.t_floor_k).astype(np.float32)


# ----------------------------------------------------------------------------- training


def _stack(boxes: Sequence[TrainingBox], masks: Mapping[str, np.ndarray], theta: ThetaSpace) -> dict[str, Any]:
    import jax.numpy as jnp

    pos = jnp.stack([jnp.asarray(b.pos_mpc_h) for b in boxes])
    weight = jnp.stack([ldl.particle_density(jnp.asarray(b.pos_mpc_h), b.mesh_shape, b.box_mpc_h) for b in boxes])
    ne = jnp.stack([jnp.asarray(b.ne) for b in boxes])
    return {
        "pos": pos,
        "theta": jnp.stack([jnp.asarray(theta.normalised(b.params)) for b in boxes]),
        "ne": ne,
        "t": jnp.stack([jnp.asarray(b.t) for b in boxes]),
        "ne_sq": ne**2,
        "weight": weight,
        "train": masks["train"],
        "val": masks["val"],
    }


def _history_rows(stage: str, history: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    key = "evaluation" if history and "evaluation" in history[0] else "step"
    return [{"stage": stage, "iteration": int(r[key]), "loss_train": r["loss_train"], "loss_val": r["loss_val"],
             "best_val": r["best_val"]} for r in history]


def train_ldl_models(
    ldl_cfg: Mapping[str, Any],
    simulation_cfg: Mapping[str, Any],
    cosmology_fiducial: Mapping[str, float],
    priors: Mapping[str, Sequence[Mapping[str, Any]]],
    seed: int,
    outputs: Mapping[str, str | Path],
) -> dict[str, Any]:
    """Train the extended LDL n_e and T models (stages in the module docstring) and write them.

    Args:
        ldl_cfg: the config's ``ldl`` section (schema ``workflow/schemas/sections/ldl.yaml``).
        simulation_cfg: the config's ``simulation`` section (a_init, n_steps, lightcone).
        cosmology_fiducial: the config's ``cosmology.fiducial`` (Omega_m, sigma_8, h, n_s, Omega_b).
        priors: the config's ``priors`` (``cosmology`` and ``astrophysics`` lists): the
            conditioning inputs and the range of the varied training boxes.
        seed: global seed (training boxes and MLP initialisation derive from it).
        outputs: paths by role: ``ne``, ``t`` (the models), ``history``, ``summary``, ``heldout``
            (the rule's named outputs).

    Returns:
        the training summary (also written as JSON).
    """
    import jax.numpy as jnp
    import pandas as pd
    from jax.flatten_util import ravel_pytree

    t_start = time.perf_counter()
    prior_list = [Prior.from_mapping(p) for p in [*priors["cosmology"], *priors.get("astrophysics", [])]]
    fiducial = fiducial_parameters(cosmology_fiducial, prior_list)
    theta = ThetaSpace.from_priors(prior_list, fiducial)
    tr = ldl_cfg["training"]
    cell = float(simulation_cfg["lightcone"]["cell_mpc_h"])
    z_base = float(tr["z_base"])
    z_nodes = t_redshift_nodes(simulation_cfg["lightcone"], float(cosmology_fiducial["Omega_m"]),
                               int(tr["n_t_redshifts"]))
    timings: dict[str, float] = {}

    # ---- training data
    t0 = time.perf_counter()
    if ldl_cfg["source"] == "synthetic":
        by_kind = {k: [Prior.from_mapping(p) for p in priors.get(k, [])] for k in ("cosmology", "astrophysics")}
        points = training_points(by_kind, fiducial, int(tr["n_varied"]), int(tr["n_feedback"]), seed)
        boxes = simulate_training_boxes(points, [z_base, *z_nodes], ldl_cfg, simulation_cfg, cosmology_fiducial, seed)
    elif ldl_cfg["source"] == "camels":
        boxes = camels_training_boxes(ldl_cfg, cell, fiducial)
        z_nodes = sorted({round(b.redshift, 6) for b in boxes if b.role in ("base", "varied")})
        z_base = min(z_nodes, key=lambda z: abs(z - z_base))
    else:
        raise ValueError(f"ldl.source must be 'synthetic' or 'camels', got {ldl_cfg['source']!r}")
    timings["training_boxes_s"] = time.perf_counter() - t0

    def at(z, roles):
        return [b for b in boxes if abs(b.redshift - z) < 1e-6 and b.role in roles]

    base_box = at(z_base, ("base",))[0]
    heldout_box = at(z_base, ("heldout",))[0]
    mesh, box = base_box.mesh_shape, base_box.box_mpc_h
    k_nyq = float(np.pi * min(mesh) / box)
    masks = ldl.split_masks(mesh, float(ldl_cfg["test_frac"]))
    smoothing_n = float(ldl_cfg["smoothing_n"])
    history: list[dict[str, Any]] = []

    # ---- stage 1: base LDL, n_e then T (two-stage X-ray fit), fiducial box at z_base
    t0 = time.perf_counter()
    pos = jnp.asarray(base_box.pos_mpc_h)
    ne_true, t_true = jnp.asarray(base_box.ne), jnp.asarray(base_box.t)
    data = {"ne": ne_true, "t": t_true, "weight": ldl.particle_density(pos, mesh, box), "ne_sq": ne_true**2}
    start = ldl.init_params(int(ldl_cfg["n_layers"]), int(ldl_cfg["n_spline"]), alpha=float(ldl_cfg["alpha_init"]),
                            k_nyquist=k_nyq)
    p_ne, h = ldl.fit_ldl(ldl.init_output_from_target(start, pos, ne_true, mesh, box), pos, data, masks, mesh, box,
                          "ne", smoothing_n, int(tr["base_iterations"]))
    history += _history_rows("base_ne", h)
    p_t, h = ldl.fit_ldl(ldl.init_output_from_target(start, pos, t_true, mesh, box), pos, data, masks, mesh, box,
                         "t", smoothing_n, int(tr["base_iterations"]))
    history += _history_rows("base_t", h)
    timings["base_fit_s"] = time.perf_counter() - t0

    # ---- stage 2: conditioning MLPs at z_base (fiducial and varied boxes)
    t0 = time.perf_counter()
    hidden = [int(n) for n in tr["mlp_hidden"]]
    keys = jax.random.split(jax.random.PRNGKey(derive_seed(seed, SeedStream.LDL_TRAINING, 2)), 2)
    n_theta = len(theta.names)
    cond_boxes = at(z_base, ("base", "varied"))
    stacked = _stack(cond_boxes, masks, theta)
    steps, lr = int(tr["conditioning_steps"]), float(tr["learning_rate"])
    mlp_ne, h = ldl.fit_conditioning(p_ne, ldl.mlp_init(keys[0], n_theta, hidden, ravel_pytree(p_ne)[0].size),
                                     stacked, mesh, box, "ne", smoothing_n, steps, lr)
    history += _history_rows("conditioning_ne", h)
    mlp_t, h = ldl.fit_conditioning(p_t, ldl.mlp_init(keys[1], n_theta, hidden, ravel_pytree(p_t)[0].size),
                                    stacked, mesh, box, "t", smoothing_n, steps, lr)
    history += _history_rows("conditioning_t", h)
    timings["conditioning_s"] = time.perf_counter() - t0

    # ---- stage 3: per-redshift T MLPs, each started from the z_base one
    t0 = time.perf_counter()
    mlps_z = []
    for z in z_nodes:
        zb = at(z, ("base", "varied"))
        if not zb:
            raise ValueError(f"no training box at the T redshift node z = {z}")
        m, h = ldl.fit_conditioning(p_t, mlp_t, _stack(zb, masks, theta), mesh, box, "t", smoothing_n,
                                    int(tr["redshift_steps"]), lr)
        history += _history_rows(f"redshift_t_z{z:.3f}", h)
        mlps_z.append(m)
    timings["redshift_s"] = time.perf_counter() - t0

    # ---- save
    model_config = {
        "ldl": dict(ldl_cfg), "simulation_lightcone": dict(simulation_cfg["lightcone"]),
        "a_init": float(simulation_cfg["a_init"]), "n_steps": int(simulation_cfg["n_steps"]),
        "cosmology_fiducial": dict(cosmology_fiducial), "seed": int(seed), "source": ldl_cfg["source"],
        "theta": theta.to_config(), "mesh_shape": list(mesh), "box_mpc_h": float(box), "cell_mpc_h": cell,
        "k_nyquist_h_mpc": k_nyq, "z_base": z_base, "z_nodes": list(z_nodes),
        "ne_unit_cm3": ldl.NE_UNIT_CM3, "t_unit_k": ldl.T_UNIT_K,
    }
    ldl.save_model(outputs["ne"], {"base": p_ne, "mlp": mlp_ne}, {**model_config, "field": "ne"})
    ldl.save_model(outputs["t"], {"base": p_t, "mlps": ldl.stack_mlps(mlps_z)}, {**model_config, "field": "t"})
    with atomic_path(outputs["history"]) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)

    # ---- held-out metrics: the conditioned models at the fiducial point, painted as the slabs are
    painter = LDLPainter(outputs["ne"], outputs["t"])
    hpos = heldout_box.pos_mpc_h
    ne_ldl, t_ldl = painter.paint(hpos, mesh, box, fiducial, z_base)
    rho = np.asarray(ldl.particle_density(jnp.asarray(hpos), mesh, box))
    ne_t_cm3 = heldout_box.ne * ldl.NE_UNIT_CM3
    t_t_k = heldout_box.t * ldl.T_UNIT_K
    metrics = {"conditioned": heldout_metrics(rho, ne_t_cm3, t_t_k, ne_ldl, t_ldl)}
    base_ne = np.asarray(ldl.ldl_forward(p_ne, jnp.asarray(hpos), mesh, box)) * ldl.NE_UNIT_CM3
    base_t = np.asarray(ldl.ldl_forward(p_t, jnp.asarray(hpos), mesh, box)) * ldl.T_UNIT_K
    metrics["base"] = heldout_metrics(rho, ne_t_cm3, t_t_k, base_ne, base_t)
    if ldl_cfg["source"] == "synthetic" and "A_AGN1" in theta.names:
        metrics["feedback_response"] = _feedback_response(painter, heldout_box, fiducial, ldl_cfg, cosmology_fiducial)
    with atomic_path(outputs["heldout"]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, rho_over_mean=rho, ne_true_cm3=ne_t_cm3, t_true_k=t_t_k, ne_ldl_cm3=ne_ldl, t_ldl_k=t_ldl,
                     box_mpc_h=np.float64(box), redshift=np.float64(z_base))
    timings["total_s"] = time.perf_counter() - t_start
    summary = {
        "metrics_heldout": metrics,
        "paper_deviation_correlation": 0.56,
        "n_training_boxes": {r: sum(b.role == r for b in boxes) for r in ("base", "varied", "heldout")},
        "z_base": z_base, "z_nodes": list(z_nodes), "mesh_shape": list(mesh), "box_mpc_h": float(box),
        "final_losses": {s: {"best_val": float(pd.DataFrame(history).query("stage == @s")["best_val"].iloc[-1])}
                         for s in dict.fromkeys(r["stage"] for r in history)},
        "source": ldl_cfg["source"],
    }
    # results hold what the run computed, so reruns are byte-identical; the stage timings go
    # to the log (and the rule's benchmark file has the total)
    write_json(outputs["summary"], summary)
    logger.info("LDL stage timings [s]: %s", {k: round(v, 1) for k, v in timings.items()})
    c = metrics["conditioned"]
    logger.info("LDL trained in %.1f s: held-out deviation correlation %.3f (paper 0.56), emissivity L1 %.3f",
                timings["total_s"], c["deviation_correlation"], c["emissivity_l1"])
    return summary


def _feedback_response(painter: LDLPainter, box: TrainingBox, fiducial, ldl_cfg, cosmology_fiducial) -> dict:
    """Dense-voxel (top 3% of rho_DM) mean n_e change for A_AGN1 0.5 -> 2, target vs conditioned LDL."""
    import jax.numpy as jnp

    rho = np.asarray(ldl.particle_density(jnp.asarray(box.pos_mpc_h), box.mesh_shape, box.box_mpc_h))
    dense = rho > np.percentile(rho, 97)
    model = _synthetic_model(ldl_cfg, float(cosmology_fiducial["Omega_b"]))
    out = {}
    for who in ("target", "ldl"):
        vals = []
        for a in (0.5, 2.0):
            params = {**fiducial, "A_AGN1": a}
            if who == "target":
                g = _gas_box(box.pos_mpc_h, box.mesh_shape, box.box_mpc_h, params, box.redshift,
                             float(cosmology_fiducial["h"]), model, "heldout")
                ne = g.ne
            else:
                ne, _ = painter.paint(box.pos_mpc_h, box.mesh_shape, box.box_mpc_h, params, box.redshift)
            vals.append(float(np.asarray(ne, np.float64)[dense].mean()))
        out[f"dense_ne_change_{who}"] = vals[1] / vals[0] - 1.0
    return out


# ----------------------------------------------------------------------------- cluster fidelity

#: columns of ``heldout_clusters.csv`` (rule ``ldl_fidelity``), before the per-band count rates
CLUSTER_COLUMNS = (
    "box", "cluster", "n_cells", "mass_msun_h", "peak_over_crit", "cr_target_cts_s", "cr_ldl_cts_s",
    "cr_ne_ldl_t_target_cts_s", "cr_ne_target_t_ldl_cts_s",
    "ne_mean_target_cm3", "ne_mean_ldl_cm3", "ne2_mean_target_cm6", "ne2_mean_ldl_cm6", "t_ew_target_k", "t_ew_ldl_k",
)


def fidelity_box_seeds(seed: int, n_boxes: int) -> list[int]:
    """PM seeds of the cluster-fidelity boxes: ``derive_seed(seed, SeedStream.LDL_TRAINING, 3, j)``
    for j < ``n_boxes`` (apart from the training boxes' (1, i) and the MLPs' (2))."""
    if n_boxes < 1:
        raise ValueError(f"ldl.fidelity.n_boxes must be >= 1, got {n_boxes}")
    return [derive_seed(seed, SeedStream.LDL_TRAINING, 3, j) for j in range(n_boxes)]


def fidelity_boxes(model_config: Mapping[str, Any], n_boxes: int) -> list[TrainingBox]:
    """The held-out boxes of the cluster-fidelity check, from a trained model's config.

    Synthetic source: ``n_boxes`` new JaxPM boxes at the fiducial point (the model's
    ``theta.fiducial``) and ``z_base``, of the training boxes' size, resolution and time
    stepping, seeded by :func:`fidelity_box_seeds`, with the synthetic target painted on them.
    CAMELS source: the snapshots of role ``heldout`` (``n_boxes`` is not used).
    """
    fiducial = dict(model_config["theta"]["fiducial"])
    if model_config["source"] == "camels":
        entries = [e for e in model_config["ldl"]["camels"]["snapshots"] if e["role"] == "heldout"]
        return [_camels_box(e, float(model_config["cell_mpc_h"]), fiducial) for e in entries]
    sim_cfg = {"a_init": model_config["a_init"], "n_steps": model_config["n_steps"],
               "lightcone": model_config["simulation_lightcone"]}
    seed = int(model_config["seed"])
    points = [("heldout", [dict(fiducial)]) for _ in range(n_boxes)]
    return simulate_training_boxes(points, [float(model_config["z_base"])], model_config["ldl"], sim_cfg,
                                   model_config["cosmology_fiducial"], seed, box_seeds=fidelity_box_seeds(seed, n_boxes))


def box_cluster_table(box: TrainingBox, ne_ldl_cm3, t_ldl_k, table, omega_m: float, h: float,
                      overdensity_crit: float, min_cells: int) -> pd.DataFrame:
    """Clusters of one box (:func:`clustersbi.ldl_fidelity.find_box_clusters` on its DM) with the
    count rates and gas properties of its target and of the LDL gas, at the box's redshift.

    Columns: :data:`CLUSTER_COLUMNS` (``box`` left 0; CR summed over the table's bands;
    ``cr_ne_ldl_t_target_cts_s`` and ``cr_ne_target_t_ldl_cts_s`` mix one field of each gas, to
    tell an n_e from a T deficit of the LDL) and ``cr_target_b{i}_cts_s``, ``cr_ldl_b{i}_cts_s``
    per band i.
    """
    import jax.numpy as jnp
    import pandas as pd

    mesh = box.mesh_shape
    rho = np.asarray(ldl.particle_density(jnp.asarray(box.pos_mpc_h), mesh, box.box_mpc_h), np.float64)
    cell_volume = float(np.prod(np.broadcast_to(np.asarray(box.box_mpc_h, float), (3,)) / np.asarray(mesh)))
    z = float(box.redshift)
    chi = float(comoving_distance_mpc_h(z, omega_m))
    found = find_box_clusters(rho, omega_m, z, cell_volume, overdensity_crit, min_cells)
    gas = {"target": (np.asarray(box.ne, np.float64) * ldl.NE_UNIT_CM3, np.asarray(box.t, np.float64) * ldl.T_UNIT_K),
           "ldl": (np.asarray(ne_ldl_cm3, np.float64), np.asarray(t_ldl_k, np.float64))}
    cols: dict[str, Any] = {"box": np.zeros(found.n, int), "cluster": np.arange(1, found.n + 1), "n_cells": found.n_cells,
                            "mass_msun_h": found.mass_msun_h, "peak_over_crit": found.peak_over_crit}
    bands = {}
    for who, (ne, t) in gas.items():
        cr = cluster_count_rates(found.labels, found.n, ne, t, z, chi, cell_volume, h, table)
        cols[f"cr_{who}_cts_s"] = cr.sum(axis=0)
        props = cluster_gas_properties(found.labels, found.n, ne, t)
        cols[f"ne_mean_{who}_cm3"], cols[f"ne2_mean_{who}_cm6"], cols[f"t_ew_{who}_k"] = (
            props["ne_mean_cm3"], props["ne2_mean_cm6"], props["t_ew_k"])
        bands.update({f"cr_{who}_b{i}_cts_s": cr[i] for i in range(cr.shape[0])})
    for name, ne, t in (("cr_ne_ldl_t_target_cts_s", gas["ldl"][0], gas["target"][1]),
                        ("cr_ne_target_t_ldl_cts_s", gas["target"][0], gas["ldl"][1])):
        cols[name] = cluster_count_rates(found.labels, found.n, ne, t, z, chi, cell_volume, h, table).sum(axis=0)
    return pd.DataFrame({**{c: cols[c] for c in CLUSTER_COLUMNS}, **bands})


def _gas_ratios(clusters: pd.DataFrame, cut: float) -> dict[str, Any]:
    """Median LDL / target ratios of CR, mean n_e^2 and emission-weighted T over the clusters
    whose target CR exceeds ``cut``, and of the CR with only the LDL's n_e (``cr_ne_only``) or
    only its T (``cr_t_only``): what makes the LDL's bright end fainter or brighter."""
    sel = clusters[(clusters["cr_target_cts_s"] > cut) & (clusters["ne2_mean_target_cm6"] > 0)
                   & (clusters["t_ew_target_k"] > 0)]
    out: dict[str, Any] = {"cr_target_above_cts_s": float(cut), "n_clusters": int(len(sel))}
    for key, col in (("cr", "cr_{}_cts_s"), ("ne2_mean", "ne2_mean_{}_cm6"), ("t_ew", "t_ew_{}_k")):
        ratio = sel[col.format("ldl")].to_numpy(float) / sel[col.format("target")].to_numpy(float)
        out[f"median_{key}_ldl_over_target"] = float(np.median(ratio)) if len(sel) else None
    for key, col in (("cr_ne_only", "cr_ne_ldl_t_target_cts_s"), ("cr_t_only", "cr_ne_target_t_ldl_cts_s")):
        ratio = sel[col].to_numpy(float) / sel["cr_target_cts_s"].to_numpy(float)
        out[f"median_{key}_ldl_over_target"] = float(np.median(ratio)) if len(sel) else None
    return out


def ldl_cluster_fidelity(
    ne_model: str | Path,
    t_model: str | Path,
    table_file: str | Path,
    fidelity_cfg: Mapping[str, Any],
    outputs: Mapping[str, str | Path],
) -> dict[str, Any]:
    """Rule ``ldl_fidelity``: the cluster-level check of the trained LDL (paper Fig. 6).

    On the held-out boxes of :func:`fidelity_boxes`, painted by the conditioned models at the
    fiducial point as the slabs are, clusters are found on the DM density
    (rho / rho_crit(z) > ``overdensity_crit``, :mod:`clustersbi.ldl_fidelity`) and their count
    rates (the sum of the emission table's bands, at the box redshift and its comoving
    distance in the fiducial cosmology) computed from the target and the LDL gas over the same
    cells; the clusters of all boxes are pooled.

    Args:
        ne_model, t_model: the trained models (rule ``train_ldl``).
        table_file: the emission table (rule ``emission_table``).
        fidelity_cfg: the config's ``ldl.fidelity`` (n_boxes, overdensity_crit, min_cells,
            cr_cuts_cts_s, n_bootstrap).
        outputs: ``summary`` (JSON: key ``cluster_fidelity``, the statistics of
            :func:`clustersbi.ldl_fidelity.fidelity_statistics` and what they were measured on;
            ``paper``, Fig. 6's values; ``config``) and ``clusters`` (CSV, one row per cluster,
            columns of :func:`box_cluster_table`).

    Returns:
        the summary.
    """
    import pandas as pd

    painter = LDLPainter(ne_model, t_model)
    cfg = painter.ne_config
    table = read_emission_table(table_file)
    omega_m, h = float(cfg["cosmology_fiducial"]["Omega_m"]), float(cfg["cosmology_fiducial"]["h"])
    thr, min_cells = float(fidelity_cfg["overdensity_crit"]), int(fidelity_cfg["min_cells"])
    cuts = [float(c) for c in fidelity_cfg["cr_cuts_cts_s"]]
    boxes = fidelity_boxes(cfg, int(fidelity_cfg["n_boxes"]))
    if not boxes:
        raise ValueError("no held-out box for the cluster-fidelity check (ldl.camels.snapshots has no 'heldout' entry)")
    tables = []
    for j, b in enumerate(boxes):
        ne_l, t_l = painter.paint(b.pos_mpc_h, b.mesh_shape, b.box_mpc_h, b.params, b.redshift)
        df = box_cluster_table(b, ne_l, t_l, table, omega_m, h, thr, min_cells)
        df["box"] = j
        tables.append(df)
        logger.info("fidelity box %d/%d: %d clusters above rho/rho_crit = %g", j + 1, len(boxes), len(df), thr)
    clusters = pd.concat(tables, ignore_index=True)
    stats = fidelity_statistics(clusters["mass_msun_h"].to_numpy(float), clusters["cr_target_cts_s"].to_numpy(float),
                                clusters["cr_ldl_cts_s"].to_numpy(float), cuts,
                                n_bootstrap=int(fidelity_cfg["n_bootstrap"]),
                                seed=derive_seed(int(cfg["seed"]), SeedStream.LDL_TRAINING, 4))
    bands = np.asarray(table.bands_kev, float)
    summary = {
        "cluster_fidelity": {
            **stats,
            "n_boxes": len(boxes),
            "redshifts": sorted({round(float(b.redshift), 6) for b in boxes}),
            "box_mpc_h": float(boxes[0].box_mpc_h), "mesh_shape": list(boxes[0].mesh_shape),
            "overdensity_crit": thr, "min_cells": min_cells,
            "cr_bands_kev": bands.tolist(),
            "gas_ratios": [_gas_ratios(clusters, c) for c in [0.0, *cuts]],
        },
        "paper": {"deviation_correlation": PAPER_DEVIATION_CORRELATION, "error_over_scatter": PAPER_ERROR_OVER_SCATTER},
        "config": dict(fidelity_cfg),
    }
    with atomic_path(outputs["clusters"]) as tmp:
        clusters.to_csv(tmp, index=False, float_format="%.8g")
    write_json(outputs["summary"], summary)
    f = summary["cluster_fidelity"]
    logger.info("cluster fidelity: %d clusters in %d boxes; deviation correlation %s (paper 0.88), "
                "error / scatter %s (paper 0.5), counts above cuts %s", f["n_clusters"], f["n_boxes"],
                f["deviation_correlation"], f["error_over_scatter"],
                [(c["cr_cut_cts_s"], c["n_target"], c["n_ldl"]) for c in f["counts_above"]])
    return summary


# ----------------------------------------------------------------------------- painting


def paint_gas_chunk(
    particle_file: str | Path,
    ne_model: str | Path,
    t_model: str | Path,
    design_params: Mapping[str, Any],
    out_file: str | Path,
) -> None:
    """Rule ``paint_gas``: n_e and T by the trained extended LDL on every slab of a chunk.

    n_e is conditioned on the simulation's parameters; T on the parameters and the slab's
    ``z_centre``. Layout of ``out_file`` in the module docstring.

    Raises:
        RuntimeError: naming the simulation, lightcone and slab if painting fails or gives
            non-finite values.
        ValueError: if the particle file holds a simulation that is not in the design, or one
            whose stored parameters differ from it (a stale file).
    """
    painter = LDLPainter(ne_model, t_model)
    design = ChunkDesign.from_params(design_params)
    with ChunkFile.open(particle_file) as src, ChunkFile.create(out_file) as out:
        work = []
        for attrs, g_sim in src.simulations():
            record = design.record(int(attrs["index"]))
            record.check_stored(attrs, str(particle_file))
            # a nested design paints the same particles once per feedback draw (one mock each)
            work += [(attrs, mock, light, g_slab) for mock in record.mocks()
                     for light, g_lc in ChunkFile.lightcones(g_sim) for g_slab in ChunkFile.slabs(g_lc)]
        t0 = time.perf_counter()
        for n, (sim_attrs, mock, light, g_slab) in enumerate(work):
            attrs = h5_read_attrs(g_slab)
            where = (f"simulation {sim_attrs['index']}" + (f" mock {mock.index}" if mock.simulation is not None else "")
                     + f" ({mock.parameters}), lightcone {light}, slab {attrs['index']}")
            try:
                ne, t = painter.paint(g_slab["positions_mpc_h"][:], attrs["mesh_shape"], attrs["box_mpc_h"],
                                      mock.parameters, float(attrs["z_centre"]))
                if not (np.all(np.isfinite(ne)) and np.all(np.isfinite(t))):
                    raise FloatingPointError("non-finite n_e or T")
            except Exception as err:
                raise RuntimeError(f"{where}: painting failed: {err}") from err
            g_out_lc = ChunkFile.lightcone(out.simulation(mock, carried=sim_attrs), light)
            g_out = ChunkFile.add_slab(g_out_lc, int(attrs["index"]), **attrs)
            g_out.create_dataset("ne_cm3", data=ne)
            g_out.create_dataset("t_k", data=t)
            logger.info("chunk %s: painted %d/%d slabs (%s, mesh %s) in %.1f s", design.chunk, n + 1, len(work),
                        where, tuple(ne.shape), time.perf_counter() - t0)
        out.write_attrs({"models": [str(ne_model), str(t_model)], "ne_unit": "comoving cm^-3", "t_unit": "K"})
