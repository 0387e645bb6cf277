"""Lagrangian Deep Learning (LDL) baryon painting of electron density and temperature.

Implements the baryonification stage of Cerardi et al. (``cerardi-ldl-xod-npe``, sections
2.2.1-2.2.2), itself built on Lagrangian Deep Learning (Dai & Seljak 2021, arXiv:2010.02926):
dark-matter particles are moved by learned displacement layers, then a ReLU activation of
their painted density gives a baryonic field (n_e or T) on the comoving grid.

Contract
--------
Inputs: particle positions ``pos_mpc_h`` of shape ``(N, 3)`` in comoving Mpc/h in
``[0, box_mpc_h)`` (any N, periodic box), a mesh shape (static tuple of three ints) and a box
size (static float, Mpc/h). Outputs: fields of shape ``mesh_shape`` in *model units*:
n_e in units of :data:`NE_UNIT_CM3` (comoving cm^-3) and T in units of :data:`T_UNIT_K` (K).
These rescalings follow Dai & Seljak's public code (n_e x 1e5, T x 1e-5), which keeps both
targets of order unity for the optimiser.

Model (one parameter set per field; the n_e and T models are independent)
-------------------------------------------------------------------------
Displacement layer l (two by default), eqs. (1)-(3) of the paper::

    f(x)  = (1 + delta(x))^gamma                                   (1)
    O(k)  = exp(-(k/k_h)^2) exp(-(k_l/k)^2) k^n [1 + S(Xi, k)]     (2')
    dx    = alpha grad F^-1(O(k) f(k))                              (3)

The paper writes the filter as ``1 + S(Xi, k)`` (a B-spline with learnable weights Xi, after
Lanzieri et al. 2022) without stating the k-envelope it multiplies; taken alone, ``1 + S``
would displace particles along the gradient of the source field itself, with no Green's
function. We therefore keep Dai & Seljak's parametric envelope (k_h, k_l, n; n = -2 is a
Poisson potential, so alpha > 0 then moves particles toward overdensities) and multiply it by
the paper's ``1 + S``. ``S`` is a sum of ``n_spline`` uniform cubic B-splines in
``k / k_max`` (``k_max`` = the largest |k| on the mesh) with weights Xi; ``n_spline = 0``
gives exactly Dai & Seljak's filter. The gradient is the exact spectral one (``i k``, the
Nyquist plane zeroed); displacements are read at the particles by CIC and the box is periodic.

Output layer, eq. (4): ``F = ReLU(b1 (1 + delta')^mu - b0)`` with delta' the overdensity of
the displaced particles painted (CIC) on the comoving grid.

Losses, eqs. (5)-(6) (emissivity ~ n_e^2 T^(1/2))::

    L_ne = < | O_s * [(n_e,LDL^2 - n_e,true^2) T_true^(1/2)] | rho_DM >_train    (5)
    L_T  = < | O_s * [n_e^2 (T_LDL^(1/2) - T_true^(1/2))] | rho_DM >_train       (6)

with the smoothing ``O_s(k) = 1 + k^-n`` (k in h/Mpc, the k = 0 mode left unchanged,
n = 1 by default, as Dai & Seljak), an L1 mean over the training voxels and the weight
``rho_DM`` = the input DM density in units of its mean. In eq. (6) ``n_e^2`` is the true
field by default (the paper); passing the fitted LDL n_e instead gives Dai & Seljak's variant.
X-ray fields are fitted in two stages: n_e first against n_e^2 T_true^(1/2), then T with
n_e fixed.

Optimisers
----------
- Base model: bounded L-BFGS-B (``scipy.optimize.minimize``) on the flattened parameter
  vector with the exact gradient from ``jax.value_and_grad``, keeping the parameters with the
  best validation loss, as Dai & Seljak. Why: the model has ~10-30 parameters, the loss is
  deterministic (full box, no minibatches), and several parameters need hard bounds
  (gamma in (0.05, 2), filter exponent in (-4.5, 4.5), mu >= 0.1, b1 >= 0) that first-order
  optimisers only approximate by clipping; quasi-Newton converges in tens of iterations.
  It finds local minima, so the starting point matters (:func:`init_params`).
- Conditioning MLP (extended LDL): optax Adam over a stack of boxes, because the MLP has
  hundreds to thousands of weights and no bounds (bounds of the resulting LDL parameters are
  enforced by clipping ``Theta_fid + dTheta``).

Extended LDL, eq. (7): ``Theta = Theta_fid + dTheta(theta_sim)``. ``dTheta`` is a small
tanh MLP of the normalised simulation parameters (any length; the paper's six are
Omega_m, sigma_8, A_SN1, A_SN2, A_AGN1, A_AGN2, use log for the A's) whose output is a
*relative* change, ``dTheta = MLP(theta) * (|Theta_fid| + 0.01)``, so that parameters of very
different magnitudes move alike; its last layer starts at zero, i.e. at Theta_fid. For T the
MLP is duplicated per training redshift and ``dTheta_z`` is linearly interpolated between the
two nearest trained redshifts (clamped outside their range), paper section 2.2.2; n_e uses
one redshift-independent MLP.

Parameters are plain nested dicts/lists of JAX arrays (pytrees); static settings (mesh
shape, box size) are separate arguments. Saved models are an ``.npz`` of arrays plus the JSON
config that made them (no pickles): :func:`save_model`, :func:`load_model`.
"""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from typing import Any, Callable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .mesh import cic_read
from .mesh import particle_density as _mesh_particle_density

__all__ = [
    "particle_density",
    "NE_UNIT_CM3",
    "T_UNIT_K",
    "fourier_k",
    "bspline_filter",
    "displacement_filter",
    "init_params",
    "init_output_from_target",
    "param_bounds",
    "displace",
    "ldl_forward",
    "smooth_field",
    "xray_residual_ne",
    "xray_residual_t",
    "smoothed_l1",
    "split_masks",
    "fit_ldl",
    "mlp_init",
    "mlp_apply",
    "normalize_theta",
    "conditioned_params",
    "conditioned_params_z",
    "stack_mlps",
    "fit_conditioning",
    "save_model",
    "load_model",
]

log = logging.getLogger(__name__)

#: n_e model unit [comoving cm^-3]: model field = n_e / NE_UNIT_CM3.
NE_UNIT_CM3 = 1e-5
#: T model unit [K]: model field = T / T_UNIT_K.
T_UNIT_K = 1e5
#: Cell convention of every LDL mesh (clustersbi.mesh): as the PM particles and the X-ray painter.
MESH_CONVENTION = "centre"

_EPS_DENSITY = 1e-8  # as Dai & Seljak: keeps (1 + delta)^gamma differentiable in empty cells
_EPS_SQRT = 1e-12

Field = Literal["ne", "t"]
#: a cubic box side [Mpc/h] or the three sides of a rectangular periodic box (lightcone slab)
Box = float | tuple[float, float, float]


# ----------------------------------------------------------------------------- painting


def _check_mesh(mesh_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in mesh_shape)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"mesh_shape must be three ints >= 2, got {mesh_shape!r}")
    return shape


def particle_density(pos_mpc_h: jnp.ndarray, mesh_shape: tuple[int, int, int], box_mpc_h: Box) -> jnp.ndarray:
    """``1 + delta`` of equal-mass particles on an LDL mesh (CIC, :data:`MESH_CONVENTION`, mean 1)."""
    return _mesh_particle_density(pos_mpc_h, tuple(int(n) for n in mesh_shape), box_mpc_h, convention=MESH_CONVENTION)


# ----------------------------------------------------------------------------- Fourier


def _box_sides(box_mpc_h) -> np.ndarray:
    """(3,) box sides [Mpc/h] from one side (cube) or three (rectangular box)."""
    return np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,))


def fourier_k(mesh_shape: tuple[int, int, int], box_mpc_h) -> list[np.ndarray]:
    """Wave vectors of the real FFT of a mesh [h/Mpc]: [k0, k1, k2], 1D axes broadcastable to
    (n0, n1, n2 // 2 + 1); ``box_mpc_h`` is one side or three. Small numpy constants under
    ``jit`` (|k|: :func:`_kmag_in_graph`)."""
    shape = _check_mesh(mesh_shape)
    box = _box_sides(box_mpc_h)
    ks = [
        2 * np.pi * np.fft.fftfreq(shape[0], d=box[0] / shape[0]).reshape(-1, 1, 1),
        2 * np.pi * np.fft.fftfreq(shape[1], d=box[1] / shape[1]).reshape(1, -1, 1),
        2 * np.pi * np.fft.rfftfreq(shape[2], d=box[2] / shape[2]).reshape(1, 1, -1),
    ]
    return [k.astype(np.float32) for k in ks]


def _kmag_in_graph(ks: Sequence[np.ndarray]) -> jnp.ndarray:
    """|k| on the rfft mesh built inside the traced program from the three 1D axes ``ks``.

    A full-mesh numpy |k| would be embedded in the compiled program as a constant, and XLA's
    constant handling then dominates compilation on large meshes (minutes at 256^3 on a GPU);
    the broadcast of three 1D vectors costs one elementwise pass per call instead.
    """
    k0, k1, k2 = (jnp.asarray(k, jnp.float32) for k in ks)
    return jnp.sqrt(k0**2 + k1**2 + k2**2)


def _gradient_kernels(mesh_shape: tuple[int, int, int], box_mpc_h) -> list[np.ndarray]:
    """Spectral derivative ``i k_d`` with the Nyquist plane of even axes set to zero."""
    ks = fourier_k(mesh_shape, box_mpc_h)
    box = _box_sides(box_mpc_h)
    out = []
    for d, k in enumerate(ks):
        k = k.copy()
        n = mesh_shape[d]
        if n % 2 == 0:
            nyq = np.isclose(np.abs(k), np.pi * n / box[d])
            k[nyq] = 0.0
        out.append(1j * k)
    return out


def _cubic_bspline(t: jnp.ndarray) -> jnp.ndarray:
    """Cardinal cubic B-spline beta_3(t) (support |t| < 2, integral 1)."""
    a = jnp.abs(t)
    inner = 2.0 / 3.0 - a**2 + 0.5 * a**3
    outer = (2.0 - a) ** 3 / 6.0
    return jnp.where(a < 1.0, inner, jnp.where(a < 2.0, outer, 0.0))


def bspline_filter(weights: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``S(Xi, x) = sum_j Xi_j beta_3(x (n - 1) - j)``: n uniform cubic B-splines on x in [0, 1].

    Args:
        weights: (n,) spline weights Xi (n = 0 gives S = 0; n = 1 a constant-width bump at 0).
        x: any-shape array of ``k / k_max`` in [0, 1].
    """
    n = weights.shape[0]
    if n == 0:
        return jnp.zeros_like(x)
    scale = max(n - 1, 1)
    out = jnp.zeros_like(x)
    for j in range(n):
        out = out + weights[j] * _cubic_bspline(x * scale - j)
    return out


def displacement_filter(layer: Mapping[str, jnp.ndarray], kmag: np.ndarray | jnp.ndarray) -> jnp.ndarray:
    """Radial filter O(k) of one displacement layer, eq. (2') of the module docstring.

    ``O(k) = exp(-(k/k_h)^2) exp(-(k_l/k)^2) k^n [1 + S(Xi, k/k_max)]``, k in h/Mpc, O(0) = 0.
    ``kmag``: |k| on the mesh (numpy, or traced: :func:`_kmag_in_graph`).
    """
    kmag = jnp.asarray(kmag, jnp.float32)
    k_safe = jnp.where(kmag > 0, kmag, 1.0)
    x = kmag / jnp.max(kmag)
    envelope = (
        jnp.exp(-((k_safe / layer["kh"]) ** 2)) * jnp.exp(-((layer["kl"] / k_safe) ** 2)) * k_safe ** layer["n"]
    )
    filt = envelope * (1.0 + bspline_filter(layer["spline"], x))
    return jnp.where(kmag > 0, filt, 0.0)


# ----------------------------------------------------------------------------- model


def init_params(
    n_layers: int = 2,
    n_spline: int = 4,
    *,
    mean_target: float = 1.0,
    alpha: float = 0.01,
    gamma: float = 0.5,
    kl: float = 0.2,
    kh: float = 5.0,
    n: float = 0.0,
    mu: float = 1.0,
    k_nyquist: float | None = None,
) -> dict[str, Any]:
    """Starting parameters, Dai & Seljak's defaults (alpha 0.01, gamma 0.5, k_l 0.2, k_h 5, n 0,
    mu 1, b1 = mean target, b0 = 0); k_l and k_h are clipped to ``(0.1, k_nyquist)`` if given.

    Returns:
        ``{"layers": [{"alpha", "gamma", "kl", "kh", "n", "spline": (n_spline,)}, ...],
        "mu", "b1", "b0"}`` (float32 JAX arrays).
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if n_spline < 0:
        raise ValueError(f"n_spline must be >= 0, got {n_spline}")
    if k_nyquist is not None:
        kl = float(np.clip(kl, 0.1, k_nyquist))
        kh = float(np.clip(kh, 0.1, k_nyquist))
    f32 = partial(jnp.asarray, dtype=jnp.float32)
    layers = [
        {
            "alpha": f32(alpha),
            "gamma": f32(gamma),
            "kl": f32(kl),
            "kh": f32(kh),
            "n": f32(n),
            "spline": jnp.zeros(n_spline, jnp.float32),
        }
        for _ in range(n_layers)
    ]
    return {"layers": layers, "mu": f32(mu), "b1": f32(mean_target), "b0": f32(0.0)}


def init_output_from_target(
    params: Mapping[str, Any],
    pos_mpc_h: jnp.ndarray,
    target: jnp.ndarray,
    mesh_shape: tuple[int, int, int],
    box_mpc_h: float,
    weight: jnp.ndarray | None = None,
) -> dict[str, Any]:
    """Starting point for the output layer from the data: ``b0 = 0`` and (b1, mu) from a
    least-squares fit of ``log target = log b1 + mu log(1 + delta')`` over the voxels where
    both are positive, with delta' painted from the particles *after* the current
    displacement layers (mu clipped to [0.1, 4]).

    L-BFGS-B finds local minima, so a start near the power-law mean relation avoids the dead
    ReLU (all voxels at zero) that a poor start can fall into.
    """
    mesh_shape = _check_mesh(mesh_shape)
    moved = displace(params, pos_mpc_h, mesh_shape, box_mpc_h)
    d = np.asarray(particle_density(moved, mesh_shape, box_mpc_h), np.float64).ravel()
    y = np.asarray(target, np.float64).ravel()
    w = np.ones_like(y) if weight is None else np.asarray(weight, np.float64).ravel()
    ok = (d > 0) & (y > 0) & (w > 0)
    if ok.sum() < 2:
        raise ValueError("target has fewer than 2 positive voxels with particles: cannot initialise")
    mu, log_b1 = np.polyfit(np.log(d[ok]), np.log(y[ok]), 1, w=np.sqrt(w[ok]))
    out = dict(params)
    out["mu"] = jnp.asarray(np.clip(mu, 0.1, 4.0), jnp.float32)
    out["b1"] = jnp.asarray(np.exp(log_b1), jnp.float32)
    out["b0"] = jnp.asarray(0.0, jnp.float32)
    return out


def param_bounds(params: Mapping[str, Any], k_nyquist: float) -> dict[str, Any]:
    """Pytree of (lower, upper) bounds matching ``params`` (None = unbounded).

    Dai & Seljak: gamma (0.05, 2); k_l, k_h (0.1, k_Nyquist); filter exponent n (-4.5, 4.5)
    (as asked of this package; their code used (-4, 4)); mu >= 0.1; b1 >= 0; alpha, b0 free.
    Spline weights are bounded to (-10, 10) to keep 1 + S finite.
    """
    layer_b = {
        "alpha": (None, None),
        "gamma": (0.05, 2.0),
        "kl": (0.1, k_nyquist),
        "kh": (0.1, k_nyquist),
        "n": (-4.5, 4.5),
    }
    layers = [
        {**layer_b, "spline": [(-10.0, 10.0)] * int(np.size(layer["spline"]))} for layer in params["layers"]
    ]
    return {"layers": layers, "mu": (0.1, None), "b1": (0.0, None), "b0": (None, None)}


def _flat_bounds(params: Mapping[str, Any], k_nyquist: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper bound vectors in ``ravel_pytree(params)`` order (+-inf where unbounded)."""
    bounds = param_bounds(params, k_nyquist)

    def value(b, which):
        if b[which] is None:
            return -np.inf if which == 0 else np.inf
        return float(b[which])

    def fill(which):
        out = {key: np.float64(value(bounds[key], which)) for key in ("mu", "b1", "b0")}
        out["layers"] = [
            {
                **{key: np.float64(value(lb[key], which)) for key in ("alpha", "gamma", "kl", "kh", "n")},
                "spline": np.array([value(b, which) for b in lb["spline"]], dtype=np.float64),
            }
            for lb in bounds["layers"]
        ]
        return out

    # numpy concatenation in tree-leaf order (= ravel_pytree order), so this stays a constant
    # when called inside jit
    lo = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(fill(0))])
    hi = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(fill(1))])
    return lo.astype(np.float64), hi.astype(np.float64)


def displace(
    params: Mapping[str, Any], pos_mpc_h: jnp.ndarray, mesh_shape: tuple[int, int, int], box_mpc_h: Box
) -> jnp.ndarray:
    """Apply every displacement layer of ``params`` (eqs. 1-3) -> moved (N, 3) positions [Mpc/h]."""
    kmag = _kmag_in_graph(fourier_k(mesh_shape, box_mpc_h))
    grads = _gradient_kernels(mesh_shape, box_mpc_h)
    for layer in params["layers"]:
        delta1 = particle_density(pos_mpc_h, mesh_shape, box_mpc_h)
        source = (delta1 + _EPS_DENSITY) ** layer["gamma"]  # eq. (1)
        fk = jnp.fft.rfftn(source) * displacement_filter(layer, kmag)  # eq. (2')
        disp = [
            cic_read(jnp.fft.irfftn(fk * g, s=mesh_shape), pos_mpc_h, box_mpc_h, convention=MESH_CONVENTION) for g in grads
        ]  # eq. (3): grad F^-1(O f), read at the particles
        pos_mpc_h = jnp.mod(pos_mpc_h + layer["alpha"] * jnp.stack(disp, axis=-1), jnp.asarray(box_mpc_h))
    return pos_mpc_h


@partial(jax.jit, static_argnames=("mesh_shape", "box_mpc_h"))
def ldl_forward(
    params: Mapping[str, Any], pos_mpc_h: jnp.ndarray, mesh_shape: tuple[int, int, int], box_mpc_h: Box
) -> jnp.ndarray:
    """LDL field on the comoving grid: displacement layers then ``ReLU(b1 (1+delta')^mu - b0)`` (eq. 4).

    Args:
        params: pytree from :func:`init_params` (or conditioned parameters).
        pos_mpc_h: (N, 3) DM particle positions [Mpc/h].
        mesh_shape: static output mesh shape.
        box_mpc_h: static box side [Mpc/h], or a tuple of three sides: a lightcone slab is a
            rectangular periodic box of cubic cells, painted by the same model.

    Returns:
        ``mesh_shape`` array in model units (n_e / NE_UNIT_CM3 or T / T_UNIT_K).
    """
    moved = displace(params, pos_mpc_h, mesh_shape, box_mpc_h)
    delta1 = particle_density(moved, mesh_shape, box_mpc_h)
    return jax.nn.relu(params["b1"] * (delta1 + _EPS_DENSITY) ** params["mu"] - params["b0"])


# ----------------------------------------------------------------------------- losses


def smooth_field(field: jnp.ndarray, box_mpc_h: float, smoothing_n: float = 1.0) -> jnp.ndarray:
    """Apply ``O_s(k) = 1 + k^-n`` (k in h/Mpc) in Fourier space; the k = 0 mode is kept as is."""
    kmag = _kmag_in_graph(fourier_k(tuple(field.shape), box_mpc_h))
    k_safe = jnp.where(kmag > 0, kmag, 1.0)
    filt = jnp.where(kmag > 0, 1.0 + k_safe ** (-float(smoothing_n)), 1.0)
    return jnp.fft.irfftn(jnp.fft.rfftn(field) * filt, s=field.shape)


def xray_residual_ne(ne_pred: jnp.ndarray, ne_true: jnp.ndarray, t_true: jnp.ndarray) -> jnp.ndarray:
    """Residual of eq. (5): ``(n_e,LDL^2 - n_e,true^2) T_true^(1/2)``."""
    return (ne_pred**2 - ne_true**2) * jnp.sqrt(jnp.maximum(t_true, 0.0))


def xray_residual_t(t_pred: jnp.ndarray, t_true: jnp.ndarray, ne_sq: jnp.ndarray) -> jnp.ndarray:
    """Residual of eq. (6): ``n_e^2 (T_LDL^(1/2) - T_true^(1/2))``."""
    return ne_sq * (jnp.sqrt(t_pred + _EPS_SQRT) - jnp.sqrt(jnp.maximum(t_true, 0.0)))


def smoothed_l1(
    residual: jnp.ndarray, weight: jnp.ndarray, mask: jnp.ndarray, box_mpc_h: float, smoothing_n: float = 1.0
) -> jnp.ndarray:
    """``sum_i |O_s * residual|_i weight_i mask_i / sum_i mask_i`` (L1 mean over the masked voxels)."""
    r = jnp.abs(smooth_field(residual, box_mpc_h, smoothing_n)) * weight
    return jnp.sum(r * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _xray_residual(pred, data: Mapping[str, jnp.ndarray], field: str) -> jnp.ndarray:
    """Eq. (5) residual for an n_e prediction, eq. (6) for a T prediction."""
    if field == "ne":
        return xray_residual_ne(pred, data["ne"], data["t"])
    if field == "t":
        return xray_residual_t(pred, data["t"], data["ne_sq"])
    raise ValueError(f"field must be 'ne' or 't', got {field!r}")


def split_masks(mesh_shape: tuple[int, int, int], test_frac: float = 0.44) -> dict[str, np.ndarray]:
    """Spatial train / validation / test split of one box (Dai & Seljak's geometry).

    With m = round(test_frac n) per axis: test is the cube ``[0, m)^3`` (8.5% of the volume for
    0.44), validation is ``x >= m, y < n - m, z < n - m`` (17.6%), train the rest (73.9%).

    Returns:
        ``{"train", "val", "test"}`` float32 0/1 arrays of ``mesh_shape``, disjoint, covering the box.
    """
    shape = _check_mesh(mesh_shape)
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    idx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    m = [max(1, int(round(test_frac * n))) for n in shape]
    test = (idx[0] < m[0]) & (idx[1] < m[1]) & (idx[2] < m[2])
    val = (idx[0] >= m[0]) & (idx[1] < shape[1] - m[1]) & (idx[2] < shape[2] - m[2])
    train = ~(test | val)
    return {k: v.astype(np.float32) for k, v in (("train", train), ("val", val), ("test", test))}


def fit_ldl(
    params0: Mapping[str, Any],
    pos_mpc_h: jnp.ndarray,
    data: Mapping[str, jnp.ndarray],
    masks: Mapping[str, np.ndarray],
    mesh_shape: tuple[int, int, int],
    box_mpc_h: float,
    field: Field = "ne",
    smoothing_n: float = 1.0,
    max_iter: int = 200,
    callback: Callable[[dict], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Fit the base LDL by bounded L-BFGS-B, keeping the parameters of best validation loss.

    Args:
        params0: starting pytree (:func:`init_params`).
        pos_mpc_h: (N, 3) input DM particles [Mpc/h].
        data: mapping of mesh-shaped arrays in model units: ``ne`` (true n_e), ``t`` (true T),
            ``weight`` (rho_DM / mean, :func:`particle_density` of the input particles) and,
            for ``field="t"``, ``ne_sq`` (the n_e^2 factor of eq. 6: the true n_e^2 per the
            paper, or the fitted LDL n_e^2 per Dai & Seljak).
        masks: ``{"train", "val"}`` from :func:`split_masks`.
        max_iter: L-BFGS-B iteration cap (each iteration evaluates loss and gradient >= once).

    Returns:
        (best parameters, history): one dict per loss evaluation with keys ``evaluation``,
        ``loss_train``, ``loss_val``, ``best_val`` (write it as a CSV with pandas).
    """
    from scipy.optimize import minimize

    mesh_shape = _check_mesh(mesh_shape)
    flat0, unravel = ravel_pytree(params0)
    k_nyq = float(np.pi * min(mesh_shape) / box_mpc_h)
    lo, hi = _flat_bounds(params0, k_nyq)
    x0 = np.clip(np.asarray(flat0, np.float64), lo, hi)
    data = {k: jnp.asarray(v) for k, v in data.items()}
    m_train = jnp.asarray(masks["train"])
    m_val = jnp.asarray(masks["val"])

    def losses(flat):
        p = unravel(flat)
        resid = _xray_residual(ldl_forward(p, pos_mpc_h, mesh_shape, box_mpc_h), data, field)
        smooth = jnp.abs(smooth_field(resid, box_mpc_h, smoothing_n)) * data["weight"]
        train = jnp.sum(smooth * m_train) / jnp.sum(m_train)
        val = jnp.sum(smooth * m_val) / jnp.maximum(jnp.sum(m_val), 1.0)
        return train, val

    vg = jax.jit(jax.value_and_grad(losses, has_aux=True))
    history: list[dict[str, float]] = []
    best = {"val": np.inf, "x": x0.copy()}
    # L-BFGS-B works on y = x / scale with the loss divided by its starting value, so that
    # every parameter moves by O(its own size) per unit step and the gradient tolerances do
    # not depend on the (arbitrary) units of the fields.
    scale = np.maximum(np.abs(x0), 0.05)
    (l0, _), _ = vg(jnp.asarray(x0, jnp.float32))
    norm = float(l0) if np.isfinite(float(l0)) and float(l0) > 0 else 1.0

    def fun(y):
        x = y * scale
        (train, val), grad = vg(jnp.asarray(x, jnp.float32))
        train, val = float(train), float(val)
        if np.isfinite(val) and val < best["val"]:
            best["val"], best["x"] = val, np.asarray(x).copy()
        row = {"evaluation": len(history), "loss_train": train, "loss_val": val, "best_val": best["val"]}
        history.append(row)
        if callback is not None:
            callback(row)
        if len(history) % 10 == 0:
            log.info("LDL %s fit: evaluation %d train %.4g val %.4g", field, len(history), train, val)
        g = np.asarray(grad, np.float64) * scale / norm
        if not np.isfinite(train) or not np.all(np.isfinite(g)):
            return np.inf, np.zeros_like(g)
        return train / norm, g

    minimize(
        fun,
        x0 / scale,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lo / scale, hi / scale)),
        options={"maxiter": int(max_iter), "ftol": 1e-12, "gtol": 1e-12},
    )
    best_params = unravel(jnp.asarray(best["x"], jnp.float32))
    return best_params, history


# ----------------------------------------------------------------------------- extended LDL


def mlp_init(key: jax.Array, n_in: int, hidden: Sequence[int], n_out: int) -> list[dict[str, jnp.ndarray]]:
    """Weights of a tanh MLP ``n_in -> hidden... -> n_out`` (Glorot-normal; last layer zero).

    The zero last layer makes the extended LDL start exactly at Theta_fid (eq. 7).
    """
    sizes = [int(n_in), *[int(h) for h in hidden], int(n_out)]
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == len(sizes) - 2:
            w = jnp.zeros((a, b), jnp.float32)
        else:
            w = jax.random.normal(keys[i], (a, b), jnp.float32) * np.sqrt(2.0 / (a + b))
        layers.append({"w": w, "b": jnp.zeros(b, jnp.float32)})
    return layers


def mlp_apply(mlp: Sequence[Mapping[str, jnp.ndarray]], x: jnp.ndarray) -> jnp.ndarray:
    """Evaluate the MLP on (..., n_in) -> (..., n_out); tanh between layers, linear output."""
    for layer in mlp[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ mlp[-1]["w"] + mlp[-1]["b"]


def normalize_theta(theta: jnp.ndarray, lo: Sequence[float], hi: Sequence[float]) -> jnp.ndarray:
    """Map simulation parameters (..., d) from [lo, hi] to [-1, 1] (use ln A for feedback A's)."""
    lo = jnp.asarray(lo, jnp.float32)
    hi = jnp.asarray(hi, jnp.float32)
    return 2.0 * (jnp.asarray(theta, jnp.float32) - lo) / (hi - lo) - 1.0


def _clip_to_bounds(params, k_nyq: float):
    lo, hi = _flat_bounds(params, k_nyq)
    flat, unravel = ravel_pytree(params)
    return unravel(jnp.clip(flat, jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32)))


def conditioned_params(
    fid_params: Mapping[str, Any],
    mlp: Sequence[Mapping[str, jnp.ndarray]],
    theta_norm: jnp.ndarray,
    k_nyquist: float,
) -> dict[str, Any]:
    """Eq. (7): ``Theta = Theta_fid + MLP(theta) * (|Theta_fid| + 0.01)``, clipped to the bounds.

    Args:
        fid_params: base LDL parameters Theta_fid.
        mlp: weights from :func:`mlp_init` with ``n_out`` = number of LDL parameters.
        theta_norm: (d,) normalised simulation parameters (:func:`normalize_theta`).
        k_nyquist: Nyquist wavenumber [h/Mpc] of the mesh (upper bound of k_l, k_h).
    """
    flat, unravel = ravel_pytree(fid_params)
    dtheta = mlp_apply(mlp, theta_norm) * (jnp.abs(flat) + 0.01)
    return _clip_to_bounds(unravel(flat + dtheta), k_nyquist)


def stack_mlps(mlps: Sequence[Sequence[Mapping[str, jnp.ndarray]]]) -> list[dict[str, jnp.ndarray]]:
    """Stack per-redshift MLPs (same architecture) along a new leading axis."""
    if len(mlps) == 0:
        raise ValueError("mlps must hold at least one MLP")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *mlps)


def conditioned_params_z(
    fid_params: Mapping[str, Any],
    mlps_stacked: Sequence[Mapping[str, jnp.ndarray]],
    z_nodes: Sequence[float],
    theta_norm: jnp.ndarray,
    redshift: float | jnp.ndarray,
    k_nyquist: float,
) -> dict[str, Any]:
    """Redshift-conditioned parameters (paper 2.2.2, used for T).

    ``dTheta_z`` is the linear interpolation in z of the per-redshift MLP outputs at the two
    trained redshifts around ``redshift`` (clamped to the end nodes outside their range).

    Args:
        mlps_stacked: :func:`stack_mlps` of one MLP per entry of ``z_nodes``.
        z_nodes: increasing trained redshifts, length = leading axis of ``mlps_stacked``.
    """
    z_nodes = jnp.asarray(z_nodes, jnp.float32)
    flat, unravel = ravel_pytree(fid_params)
    outs = jax.vmap(lambda m: mlp_apply(m, theta_norm))(mlps_stacked)  # (n_z, P)
    if outs.shape[0] != z_nodes.shape[0]:
        raise ValueError(f"z_nodes has {z_nodes.shape[0]} entries but there are {outs.shape[0]} MLPs")
    rel = jax.vmap(lambda col: jnp.interp(redshift, z_nodes, col), in_axes=1)(outs)
    return _clip_to_bounds(unravel(flat + rel * (jnp.abs(flat) + 0.01)), k_nyquist)


def fit_conditioning(
    fid_params: Mapping[str, Any],
    mlp0: Sequence[Mapping[str, jnp.ndarray]],
    boxes: Mapping[str, jnp.ndarray],
    mesh_shape: tuple[int, int, int],
    box_mpc_h: float,
    field: Field = "ne",
    smoothing_n: float = 1.0,
    steps: int = 200,
    learning_rate: float = 1e-2,
) -> tuple[list[dict[str, jnp.ndarray]], list[dict[str, float]]]:
    """Train the conditioning MLP of eq. (7) with optax Adam on a stack of boxes.

    Args:
        mlp0: starting MLP (:func:`mlp_init`, or the MLP of another redshift to retrain).
        boxes: stacked arrays, leading axis B (boxes of one mesh and particle count):
            ``pos`` (B, N, 3) [Mpc/h], ``theta`` (B, d) normalised parameters, ``ne``, ``t``,
            ``weight`` (and ``ne_sq`` for ``field="t"``) of (B, *mesh_shape), ``train``,
            ``val`` masks of (B, *mesh_shape) (masks may also be (*mesh_shape)).
        steps: Adam steps (full batch over the B boxes).

    Returns:
        (MLP with the best validation loss, history of dicts ``step``, ``loss_train``, ``loss_val``).
    """
    import optax

    mesh_shape = _check_mesh(mesh_shape)
    k_nyq = float(np.pi * min(mesh_shape) / box_mpc_h)
    b = {k: jnp.asarray(v) for k, v in boxes.items()}
    n_boxes = b["pos"].shape[0]
    for key in ("train", "val"):
        if b[key].ndim == 3:
            b[key] = jnp.broadcast_to(b[key], (n_boxes, *mesh_shape))

    def one_box(mlp, box):
        p = conditioned_params(fid_params, mlp, box["theta"], k_nyq)
        pred = ldl_forward(p, box["pos"], mesh_shape, box_mpc_h)
        if field == "ne":
            resid = xray_residual_ne(pred, box["ne"], box["t"])
        else:
            resid = xray_residual_t(pred, box["t"], box["ne_sq"])
        smooth = jnp.abs(smooth_field(resid, box_mpc_h, smoothing_n)) * box["weight"]
        tr = jnp.sum(smooth * box["train"]) / jnp.sum(box["train"])
        va = jnp.sum(smooth * box["val"]) / jnp.maximum(jnp.sum(box["val"]), 1.0)
        return tr, va

    if field not in ("ne", "t"):
        raise ValueError(f"field must be 'ne' or 't', got {field!r}")

    def total(mlp):
        tr, va = jax.vmap(lambda box: one_box(mlp, box))(b)
        return jnp.mean(tr), jnp.mean(va)

    opt = optax.adam(learning_rate)

    @jax.jit
    def step(mlp, state):
        (tr, va), g = jax.value_and_grad(total, has_aux=True)(mlp)
        updates, state = opt.update(g, state, mlp)
        return optax.apply_updates(mlp, updates), state, tr, va

    mlp = jax.tree_util.tree_map(jnp.asarray, mlp0)
    state = opt.init(mlp)
    history: list[dict[str, float]] = []
    best_val, best_mlp = np.inf, mlp
    for i in range(int(steps)):
        new_mlp, state, tr, va = step(mlp, state)
        tr, va = float(tr), float(va)  # losses of `mlp`, before this update
        if va < best_val:
            best_val, best_mlp = va, mlp
        history.append({"step": i, "loss_train": tr, "loss_val": va, "best_val": best_val})
        if (i + 1) % 50 == 0:
            log.info("LDL %s conditioning: step %d train %.4g val %.4g", field, i + 1, tr, va)
        mlp = new_mlp
    return best_mlp, history


# ----------------------------------------------------------------------------- save / load


def _flatten_nested(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if "/" in str(k) or str(k).isdigit():
                raise ValueError(f"parameter key {k!r} must not contain '/' nor be all digits")
            out.update(_flatten_nested(v, f"{prefix}{k}/"))
    elif isinstance(tree, (list, tuple)):
        if len(tree) == 0:
            out[f"{prefix}__empty_list__"] = np.zeros(0)
        for i, v in enumerate(tree):
            out.update(_flatten_nested(v, f"{prefix}{i}/"))
    else:
        out[prefix.rstrip("/")] = np.asarray(tree)
    return out


def _unflatten_nested(flat: Mapping[str, np.ndarray]) -> Any:
    root: dict = {}
    for key, value in flat.items():
        parts = key.split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[-1] == "__empty_list__":
            continue
        node[parts[-1]] = jnp.asarray(value)

    def convert(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [convert(node[str(i)]) for i in range(len(node))]
        return {k: convert(v) for k, v in node.items()}

    # lists that were empty come back as empty dicts: turn those into lists
    def fix_empty(node):
        if isinstance(node, dict):
            return {k: ([] if isinstance(v, dict) and not v else fix_empty(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix_empty(v) for v in node]
        return node

    return fix_empty(convert(root))


def save_model(path: str | os.PathLike, params: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Write parameter pytrees (nested dicts/lists of arrays) and their config to one ``.npz``.

    The config (JSON-serialisable: mesh, box, n_layers, smoothing_n, training source, seeds...)
    is stored as the string array ``__config__``; nothing is pickled. Written atomically.
    """
    from clustersbi.io import _json_default, atomic_path

    arrays = _flatten_nested(params)
    arrays["__config__"] = np.array(json.dumps(config, sort_keys=True, default=_json_default))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_model(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Inverse of :func:`save_model` -> (params pytree, config dict)."""
    with np.load(path, allow_pickle=False) as npz:
        flat = {k: npz[k] for k in npz.files}
    config = json.loads(str(flat.pop("__config__")))
    return _unflatten_nested(flat), config
