"""GPU-only checks: the JAX simulation, mesh painter and LDL code on a CUDA device agree with the
CPU, and the torch NPE trains and samples on CUDA.

All tests are marked ``gpu`` and skip without a GPU (CI has none). The JAX ones also need the
CUDA backend enabled next to the CPU one: ``conftest.py`` defaults ``JAX_PLATFORMS`` to "cpu",
so on a GPU machine run e.g. ``JAX_PLATFORMS=cuda,cpu python -m pytest -m gpu``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from clustersbi import gas, ldl, mesh
from clustersbi.cosmology import Cosmology, camb_power
from clustersbi.npe import NPEConfig, sample_posteriors, train_npe
from clustersbi.pm import density_power_spectrum, run_pm

pytestmark = pytest.mark.gpu

BOX_MPC_H = 256.0
N_MESH = 32
#: float32 scatter-add in a different order on the GPU (one cell holds O(10) unit weights)
PAINT_ATOL = 1e-4


def _jax_gpu_and_cpu():
    try:
        gpu = jax.devices("cuda")[0]
    except RuntimeError:
        pytest.skip("no JAX CUDA backend (on a GPU machine set JAX_PLATFORMS=cuda,cpu)")
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:
        pytest.skip("no JAX CPU backend to compare with (JAX_PLATFORMS must include cpu)")
    return gpu, cpu


def _periodic_diff(a: np.ndarray, b: np.ndarray, box: float) -> np.ndarray:
    return (a - b + 0.5 * box) % box - 0.5 * box


def test_pm_run_on_gpu_matches_cpu():
    gpu, cpu = _jax_gpu_and_cpu()
    cosmo = Cosmology()
    k = np.geomspace(1e-4, 10.0, 400)
    pk = camb_power(cosmo, [0.0], k).pk_mpc3_h3[0]
    runs = {}
    for name, dev in (("cpu", cpu), ("gpu", gpu)):
        with jax.default_device(dev):
            assert jnp.zeros(1).devices() == {dev}
            runs[name] = run_pm(cosmo, k, pk, mesh_shape=N_MESH, box_mpc_h=BOX_MPC_H, seed=3, snapshot_a=(1.0,),
                                n_steps=10)
    c, g = runs["cpu"], runs["gpu"]
    lin_scale = float(np.std(c.linear_delta_z0))
    assert np.max(np.abs(g.linear_delta_z0 - c.linear_delta_z0)) < 1e-4 * lin_scale
    cell = BOX_MPC_H / N_MESH
    for snap_c, snap_g in zip([c.initial, *c.snapshots], [g.initial, *g.snapshots]):
        assert np.all(np.isfinite(snap_g.positions_mpc_h)) and np.all(np.isfinite(snap_g.velocities_km_s))
        dpos = np.abs(_periodic_diff(snap_g.positions_mpc_h, snap_c.positions_mpc_h, BOX_MPC_H))
        # float32 rounding (FFTs, scatter-add order) grows through the nonlinear steps
        assert dpos.max() < 0.05 * cell, f"a={snap_c.a}: max |dx| {dpos.max():.3g} Mpc/h"
        pk_c = density_power_spectrum(snap_c.density, BOX_MPC_H).pk_mpc_h3
        pk_g = density_power_spectrum(snap_g.density, BOX_MPC_H).pk_mpc_h3
        np.testing.assert_allclose(pk_g, pk_c, rtol=1e-3, err_msg=f"P(k) at a={snap_c.a}")


@pytest.mark.parametrize("convention", ["centre", "node"])
def test_cic_paint_and_read_on_gpu_match_cpu(convention):
    """The one painter on the GPU: particles outside the box and on the last cell wrap as on the CPU."""
    gpu, cpu = _jax_gpu_and_cpu()
    rng = np.random.default_rng(2)
    shape, box = (12, 10, 14), (24.0, 20.0, 28.0)
    pos_np = rng.uniform(-3.0, 31.0, (20000, 3)).astype(np.float32)
    wts_np = rng.uniform(0.5, 2.0, 20000).astype(np.float32)
    out = {}
    for name, dev in (("cpu", cpu), ("gpu", gpu)):
        pos, wts = jax.device_put(pos_np, dev), jax.device_put(wts_np, dev)
        painted = mesh.cic_paint(pos, shape, box, wts, convention=convention)
        assert painted.devices() == {dev}
        out[name] = (np.asarray(painted), np.asarray(mesh.cic_read(painted, pos, box, convention=convention)))
    np.testing.assert_allclose(out["gpu"][0], out["cpu"][0], rtol=0, atol=PAINT_ATOL * out["cpu"][0].max())
    assert abs(out["gpu"][0].sum() / wts_np.sum(dtype=np.float64) - 1) < 1e-5
    np.testing.assert_allclose(out["gpu"][1], out["cpu"][1], rtol=1e-5, atol=PAINT_ATOL * out["cpu"][1].max())


def test_ldl_forward_and_gradient_on_gpu_match_cpu():
    gpu, cpu = _jax_gpu_and_cpu()
    box, n = 100.0, 32
    mesh_shape = (n, n, n)
    pos_np = np.asarray(gas.zeldovich_particles(0, n, box), dtype=np.float32)
    params0 = ldl.init_params(2, 4, alpha=-0.5, k_nyquist=np.pi * n / box)
    target = np.random.default_rng(1).uniform(0.5, 1.5, mesh_shape).astype(np.float32)

    def loss(params, pos, tgt):
        return jnp.mean((ldl.ldl_forward(params, pos, mesh_shape, box) - tgt) ** 2)

    out = {}
    for name, dev in (("cpu", cpu), ("gpu", gpu)):
        params = jax.device_put(params0, dev)
        pos, tgt = jax.device_put(pos_np, dev), jax.device_put(target, dev)
        field = ldl.ldl_forward(params, pos, mesh_shape, box)
        assert field.devices() == {dev}
        val, grad = jax.value_and_grad(loss)(params, pos, tgt)
        out[name] = (np.asarray(field), float(val), jax.tree_util.tree_map(np.asarray, grad))
    (f_c, v_c, g_c), (f_g, v_g, g_g) = out["cpu"], out["gpu"]
    assert np.all(np.isfinite(f_g))
    np.testing.assert_allclose(f_g, f_c, rtol=1e-3, atol=1e-4 * np.abs(f_c).max())
    assert abs(v_g - v_c) <= 1e-4 * abs(v_c)
    for a, b in zip(jax.tree_util.tree_leaves(g_g), jax.tree_util.tree_leaves(g_c)):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4 * max(np.abs(b).max(), 1e-12))


def test_npe_trains_and_samples_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(0)
    low, high = np.zeros(3), np.ones(3)
    theta = rng.uniform(low, high, size=(2400, 3))
    y = theta @ rng.normal(size=(3, 3)) + 0.05 * rng.normal(size=(2400, 3))
    cfg = NPEConfig(max_epochs=3, stop_after_epochs=4, batch_size=200, num_components=4)
    res = train_npe(theta[:2000], y[:2000], theta[2000:], y[2000:], low, high, cfg, device="cuda")
    assert next(res.estimator.parameters()).is_cuda
    assert np.all(np.isfinite([h["val_loss"] for h in res.history]))
    samples = sample_posteriors(res.posterior, y[2000:2004], 200, seed=1)
    assert samples.shape == (4, 200, 3) and np.all(np.isfinite(samples))
    assert np.all((samples >= low) & (samples <= high))
