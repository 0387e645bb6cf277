"""A small trained-looking LDL model pair and a linear-power chunk file for the forward-model tests
(not physics: stand-ins in the formats the rules ``train_ldl`` and ``linear_power`` write).

The n_e and T models are :func:`clustersbi.ldl.init_params` bases with conditioning MLPs whose
last layer is random, not zero, so that the simulation's parameters change the painted gas; the
T model has two redshift nodes. The linear P(k) is a smooth CDM-like shape (no CAMB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from clustersbi import ldl
from clustersbi.cosmology import Cosmology, LinearPower
from clustersbi.design import ChunkDesign
from clustersbi.stages.cosmology import write_linear_power
from clustersbi.stages.ldl import LDLPainter, ThetaSpace

#: the conditioning inputs of the toy models (other parameters take their fiducial values)
THETA = ThetaSpace(("Omega_m", "sigma_8", "A_AGN1"), (False, False, True), (0.1, 0.6, float(np.log(0.25))),
                   (0.5, 1.0, float(np.log(4.0))), {"Omega_m": 0.3, "sigma_8": 0.8, "A_AGN1": 1.0})
#: redshift nodes of the T model
Z_NODES = (0.2, 0.4)


def _random_mlp(key, n_in: int, n_out: int, scale: float):
    """A conditioning MLP whose last layer is not zero (the conditioning then matters)."""
    mlp = ldl.mlp_init(key, n_in, [8], n_out)
    mlp[-1]["w"] = scale * jax.random.normal(jax.random.fold_in(key, 1), mlp[-1]["w"].shape)
    return mlp


def write_ldl_models(directory: Path, cell_mpc_h: float, t_floor_k: float = 1e4) -> LDLPainter:
    """``ne.npz`` and ``t.npz`` in ``directory`` as :func:`clustersbi.ldl.save_model` writes them
    for cells of ``cell_mpc_h`` [Mpc/h]; returns their painter."""
    k_nyq = float(np.pi / cell_mpc_h)
    config = {"theta": THETA.to_config(), "k_nyquist_h_mpc": k_nyq, "z_nodes": list(Z_NODES),
              "ldl": {"t_floor_k": t_floor_k}}
    base_ne = ldl.init_params(2, 4, alpha=-0.3, k_nyquist=k_nyq)
    base_ne["layers"][0]["spline"] = base_ne["layers"][0]["spline"].at[1].set(0.5)
    base_t = ldl.init_params(1, 2, mean_target=60.0, mu=0.4, alpha=0.2, k_nyquist=k_nyq)
    n_ne, n_t = ravel_pytree(base_ne)[0].size, ravel_pytree(base_t)[0].size
    key = jax.random.PRNGKey(3)
    mlp_ne = _random_mlp(key, len(THETA.names), n_ne, 0.05)
    mlps_t = ldl.stack_mlps([_random_mlp(jax.random.fold_in(key, z), len(THETA.names), n_t, 0.05) for z in (2, 4)])
    ldl.save_model(directory / "ne.npz", {"base": base_ne, "mlp": mlp_ne}, {**config, "field": "ne"})
    ldl.save_model(directory / "t.npz", {"base": base_t, "mlps": mlps_t}, {**config, "field": "t"})
    return LDLPainter(directory / "ne.npz", directory / "t.npz")


def power_law_spectrum(pk_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(k [h/Mpc], a smooth, positive linear P(k) at z = 0 [(Mpc/h)^3]), a CDM-like shape."""
    k = np.geomspace(1e-3, 10.0, 128)
    return k, pk_scale * 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.6)


def write_toy_linear_power(path: Path, design: ChunkDesign, fiducial: dict) -> list[Cosmology]:
    """A linear-power chunk file (the cosmology stage's contract) with :func:`power_law_spectrum`
    scaled by (sigma_8 / 0.8)^2 per simulation, at z = 0 only; returns the cosmologies."""
    cosmologies = [Cosmology.from_mapping(record.parameters, fiducial) for record in design]
    spectra: Sequence[LinearPower] = []
    for cosmo in cosmologies:
        k, pk = power_law_spectrum((cosmo.sigma_8 / 0.8) ** 2)
        spectra.append(LinearPower(k, np.array([0.0]), pk[None, :], cosmo.sigma_8, a_s=2.1e-9))
    write_linear_power(path, design, cosmologies, spectra)
    return cosmologies
