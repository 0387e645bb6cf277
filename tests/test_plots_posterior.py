"""Posterior figures drawn with the corner package (clustersbi.plots.posterior_corner and its callers).

Small synthetic Gaussian samples; checks the figure's content (axes, truth lines, axis ranges,
legend) and that the stage-facing plot functions write their files from files laid out as the
stages write them.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi.design import priors_by_name
from clustersbi.plots import inference_axes, plt, posterior_corner
from clustersbi.plots.analytic import plot_npe_vs_exact
from clustersbi.plots.infer import plot_corner, plot_inference_products

PNG_MAGIC = b"\x89PNG"
PRIORS = {
    "cosmology": [
        {"name": "Omega_m", "label": r"\Omega_m", "distribution": "uniform", "low": 0.1, "high": 0.5},
        {"name": "sigma_8", "label": r"\sigma_8", "distribution": "uniform", "low": 0.6, "high": 1.0},
    ],
    "astrophysics": [{"name": "A_SN1", "label": r"A_{\rm SN1}", "distribution": "loguniform", "low": 0.25, "high": 4.0}],
}
NAMES = ["Omega_m", "sigma_8", "ln_A_SN1"]
TRUTH = np.array([0.3, 0.8, 0.1])
COV = np.array([[2e-3, -1e-3, 0.0], [-1e-3, 1e-3, 0.0], [0.0, 0.0, 0.2]])


def _samples(rng, centre, n=400):
    return rng.multivariate_normal(centre, COV, size=n)


def _is_png(path):
    return path.read_bytes()[:4] == PNG_MAGIC and path.stat().st_size > 5000


def _vertical_lines_at(ax, x) -> int:
    return sum(1 for line in ax.get_lines() if len(line.get_xdata()) == 2 and np.allclose(line.get_xdata(), [x, x]))


def test_inference_axes_are_the_prior_box_in_inference_coordinates():
    labels, ranges = inference_axes(NAMES, priors_by_name(PRIORS))
    assert labels == [r"$\Omega_m$", r"$\sigma_8$", r"$\ln A_{\rm SN1}$"]
    np.testing.assert_allclose(ranges, [(0.1, 0.5), (0.6, 1.0), (np.log(0.25), np.log(4.0))], rtol=1e-12)
    with pytest.raises(ValueError, match="no prior"):
        inference_axes(["h"], priors_by_name(PRIORS))


def test_corner_overlays_posteriors_with_truth_ranges_and_legend():
    rng = np.random.default_rng(1)
    labels, ranges = inference_axes(NAMES, priors_by_name(PRIORS))
    fig = posterior_corner([_samples(rng, TRUTH), _samples(rng, TRUTH + 0.02, 200)], labels, names=["exact", "NPE"],
                           truth=TRUTH, ranges=ranges, colors=["k", "C1"])
    axes = np.array(fig.axes).reshape(3, 3)
    assert len(fig.axes) == 9, f"{len(fig.axes)} axes for 3 parameters"
    for i in range(3):
        assert axes[i, i].get_xlim() == pytest.approx(ranges[i]), f"parameter {i}: x range {axes[i, i].get_xlim()}"
        assert _vertical_lines_at(axes[i, i], TRUTH[i]) >= 1, f"no truth line at {TRUTH[i]} on the diagonal {i}"
        # two smoothed 1D marginals, each normalised to unit sum, inside the panel's y range
        curves = [line for line in axes[i, i].get_lines() if len(line.get_xdata()) > 2]
        assert len(curves) == 2 and all(c.get_ydata().max() <= axes[i, i].get_ylim()[1] for c in curves)
    assert axes[2, 0].get_ylim() == pytest.approx(ranges[2]) and axes[2, 0].get_xlim() == pytest.approx(ranges[0])
    # 68% and 95% contours of both posteriors in the lower triangle
    assert len(axes[1, 0].collections) >= 2
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["exact", "NPE", "truth"]
    plt.close(fig)


def test_plot_corner_one_or_several_posteriors(tmp_path):
    rng = np.random.default_rng(2)
    one = plot_corner(_samples(rng, TRUTH), NAMES, tmp_path / "one.png", truth=TRUTH)
    several = plot_corner(np.stack([_samples(rng, TRUTH), _samples(rng, TRUTH + 0.05)]), NAMES, tmp_path / "two.png",
                          truth=[TRUTH, None], names=["a", "b"], ranges=inference_axes(NAMES, priors_by_name(PRIORS))[1])
    assert _is_png(one) and _is_png(several)


def test_plot_inference_products_from_stage_files(tmp_path):
    rng = np.random.default_rng(3)
    with h5py.File(tmp_path / "samples.h5", "w") as f:
        theta = rng.uniform([0.1, 0.6, -1.3], [0.5, 1.0, 1.3], size=(20, 3))
        f["test_theta"], f["test_compressed"] = theta, theta + 0.01 * rng.standard_normal(theta.shape)
        f["observation_samples"] = np.stack([_samples(rng, TRUTH), _samples(rng, TRUTH - 0.03)]).astype(np.float32)
        f["observation_theta"] = np.stack([TRUTH, TRUTH - 0.03])
        f.attrs["param_names"] = NAMES
        f.attrs["observation"] = "mock"
    calibration = {"sbc_ranks": rng.integers(0, 51, size=(20, 3)).tolist(), "n_samples": 50,
                   "tarp_ecp": np.linspace(0, 1, 11).tolist(), "tarp_alpha": np.linspace(0, 1, 11).tolist(), "tarp_atc": 0.0}
    (tmp_path / "calibration.json").write_text(json.dumps(calibration))
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9]})
    for name in ("compressor.csv", "npe.csv"):
        history.to_csv(tmp_path / name, index=False)
    paths = {k: str(tmp_path / f"{k}.png") for k in ("predicted", "corner", "ranks", "tarp", "training")}
    plot_inference_products(tmp_path / "samples.h5", tmp_path / "calibration.json", tmp_path / "compressor.csv",
                            tmp_path / "npe.csv", paths, priors=PRIORS)
    for key, path in paths.items():
        assert _is_png(tmp_path / f"{key}.png"), key


def test_plot_npe_vs_exact_from_stage_files(tmp_path):
    rng = np.random.default_rng(4)
    physical = ["Omega_m", "sigma_8", "A_SN1"]
    with h5py.File(tmp_path / "exact.h5", "w") as f:
        f.attrs["names"], f.attrs["param_names"] = physical, NAMES
        f["index"], f["row"], f["theta"] = np.arange(3), np.arange(3), np.tile(TRUTH, (3, 1))
        for k in range(3):
            f.create_group(f"post_{k:03d}")["samples"] = _samples(rng, TRUTH, 300 + 10 * k)
    with h5py.File(tmp_path / "npe.h5", "w") as f:
        f["samples"] = np.stack([_samples(rng, TRUTH + 0.01, 200) for _ in range(3)]).astype(np.float32)
        f["index"], f["row"] = np.arange(3), np.arange(3)
        f.attrs["param_names"] = NAMES
    plot_npe_vs_exact(tmp_path / "exact.h5", tmp_path / "npe.h5", PRIORS, tmp_path / "npe_vs_exact.png", n_show=2)
    assert _is_png(tmp_path / "npe_vs_exact.png")
