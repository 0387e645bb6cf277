"""U-Net mass maps (clustersbi.unet): shapes of every variant, views, splits, and a toy whose
target is a known function of the input (a smoothed power of it), learnt in seconds.

References: the toy's generating function (scipy's Gaussian filter), the trivial predictor
(the training median map) as the baseline to beat, the identity of resumed and uninterrupted
trainings, and the config schema's defaults.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from clustersbi import unet as u
from clustersbi.config import load_schema

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y", "mass"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks run fastest on one thread, and CI's two cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(**kw) -> u.UNetConfig:
    base = dict(n_filters=4, n_layers=2, dropout=0.1, batch_size=4, max_epochs=3, patience=3, lr=1e-3)
    return u.UNetConfig(**{**base, **kw})


def test_views_of_each_variant():
    assert u.variant_views("xray", CHANNELS) == {"xray": ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7"]}
    assert u.variant_views("y", CHANNELS) == {"y": ["y"]}
    assert u.variant_views("multi1", CHANNELS) == {"multi": ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y"]}
    assert u.variant_views("multi3", CHANNELS + ["stellar"]) == {
        "xray": ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7"], "y": ["y"], "stellar": ["stellar"]}
    with pytest.raises(ValueError, match="stellar"):
        u.variant_views("stellar", CHANNELS)
    with pytest.raises(ValueError, match="combines tracers"):
        u.variant_views("multi3", ["y", "mass"])


@pytest.mark.parametrize("variant", ["xray", "y", "multi1", "multi3"])
@pytest.mark.parametrize("shape, kernel, layers", [((32, 32), 3, 3), ((21, 21), 2, 3), ((17, 23), 5, 2), ((9, 9), 1, 4)])
def test_output_shape_of_every_variant_and_odd_sizes(variant, shape, kernel, layers):
    views = u.variant_views(variant, CHANNELS)
    net = u.build_unet({v: len(c) for v, c in views.items()}, _tiny(kernel_size=kernel, n_layers=layers)).eval()
    x = {v: torch.randn(2, len(c), *shape) for v, c in views.items()}
    out = net(x)
    assert out.shape == (2, *shape)
    assert torch.isfinite(out).all()


def test_multi3_output_depends_on_every_encoder():
    views = u.variant_views("multi3", CHANNELS)
    net = u.build_unet({v: len(c) for v, c in views.items()}, _tiny()).eval()
    assert set(net.encoders) == {"xray", "y"}
    x = {v: torch.randn(2, len(c), 16, 16, requires_grad=True) for v, c in views.items()}
    net(x).sum().backward()
    for v in views:
        assert x[v].grad.abs().sum() > 0, f"view {v} does not reach the output"


def test_cluster_split_keeps_views_together_and_has_the_fractions():
    ids = np.repeat(np.arange(3000), 3)
    roles = u.cluster_split(ids, (0.8, 0.1, 0.1), seed=7)
    per_cluster = roles.reshape(3000, 3)
    assert np.all(per_cluster == per_cluster[:, :1]), "views of one cluster straddle splits"
    frac = np.array([(per_cluster[:, 0] == r).mean() for r in ("train", "val", "test")])
    # binomial standard error of a fraction 0.1 of 3000 clusters: 0.0055
    assert np.all(np.abs(frac - [0.8, 0.1, 0.1]) < 0.02), frac
    assert not np.array_equal(roles, u.cluster_split(ids, (0.8, 0.1, 0.1), seed=8))
    with pytest.raises(ValueError, match="summing to 1"):
        u.cluster_split(ids, (0.8, 0.1, 0.2), seed=7)


def test_channel_transform_round_trips():
    x = np.random.default_rng(0).lognormal(size=(4, 8, 8)) * 1e12
    x[0, 0, 0] = 0.0
    t = u.fit_channel_transform(x, "positive")
    assert t.offset == pytest.approx(1e-3 * np.median(x[x > 0]))
    z = t.forward(x)
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(t.inverse(z), x, rtol=1e-5, atol=1e-3 * t.offset)
    c = u.fit_channel_transform(np.array([0.0, 3.0, 99.0]), "counts")
    np.testing.assert_allclose(c.forward(np.array([99.0])) * c.std + c.mean, 2.0, rtol=1e-6)


def _toy(n=96, npix=24, seed=1):
    """y: a lognormal field; mass: 1e11 x (y smoothed by a Gaussian of 1 pixel)^1.5."""
    rng = np.random.default_rng(seed)
    g = gaussian_filter(rng.standard_normal((n, npix, npix)), sigma=(0, 1.5, 1.5), mode="wrap")
    y = 1e-5 * np.exp(g / g.std())
    mass = 1e11 * gaussian_filter(y / 1e-5, sigma=(0, 1, 1), mode="wrap") ** 1.5
    return {"y": y.astype(np.float32), "mass": mass.astype(np.float32)}


def test_unet_learns_a_smoothed_power_of_its_input(tmp_path):
    images = _toy()
    roles = np.array(["train"] * 64 + ["val"] * 16 + ["test"] * 16)
    cfg = u.UNetConfig(n_filters=8, n_layers=2, dropout=0.0, lr=3e-3, batch_size=16, max_epochs=30, patience=30)
    res = u.train_unet(images, roles, {"y": ["y"]}, cfg, tmp_path, device="cpu")
    test = {k: v[80:] for k, v in images.items()}
    pred = u.predict_mass_maps(res, test)
    rel = np.abs(pred / test["mass"] - 1)
    baseline = np.abs(np.median(images["mass"][:64]) / test["mass"] - 1)
    assert np.median(rel) < 0.1 and np.median(rel) < 0.2 * np.median(baseline), (np.median(rel), np.median(baseline))
    # the best-validation epoch's model is what was saved and reloads to the same maps
    loaded = u.load_unet(tmp_path / "model.pt", device="cpu")
    np.testing.assert_allclose(u.predict_mass_maps(loaded, test), pred, rtol=1e-5)
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(u.HISTORY_COLUMNS) and len(rows) == len(res.history) <= 30
    val = [float(r["val_loss"]) for r in rows]
    assert res.best_epoch == int(np.argmin(val)) and res.best_val_loss == pytest.approx(min(val))
    assert not (tmp_path / "last.pt").exists()


def test_resumed_training_equals_uninterrupted(tmp_path):
    images = _toy(n=20, npix=16, seed=2)
    roles = np.array(["train"] * 12 + ["val"] * 8)
    cfg = _tiny(max_epochs=4, patience=4, lr_drop_epoch=2)
    full = u.train_unet(images, roles, {"y": ["y"]}, cfg, tmp_path / "full", device="cpu")
    part = u.train_unet(images, roles, {"y": ["y"]}, cfg, tmp_path / "part", device="cpu", epoch_budget=2)
    assert not part.completed and (tmp_path / "part" / "last.pt").exists()
    rest = u.train_unet(images, roles, {"y": ["y"]}, cfg, tmp_path / "part", device="cpu")
    assert rest.completed
    assert [h["val_loss"] for h in rest.history] == [h["val_loss"] for h in full.history]
    assert [h["lr"] for h in full.history] == [1e-3, 1e-3, 1e-4, 1e-4]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k


def test_train_unet_rejects_maps_without_a_target_or_val_rows(tmp_path):
    images = _toy(n=6, npix=8)
    with pytest.raises(ValueError, match="'mass'"):
        u.train_unet({"y": images["y"]}, np.array(["train"] * 4 + ["val"] * 2), {"y": ["y"]}, _tiny(), tmp_path)
    with pytest.raises(ValueError, match="val maps"):
        u.train_unet(images, np.array(["train"] * 6), {"y": ["y"]}, _tiny(), tmp_path)


def test_config_defaults_are_the_schemas():
    import dataclasses

    props = load_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]["mass_maps"]["properties"]["unet"]["properties"]
    # the seed is derived per variant from the global seed by the stage
    defaults = {f.name: f.default for f in dataclasses.fields(u.UNetConfig) if f.name != "seed"}
    assert set(props) == set(defaults), sorted(set(props) ^ set(defaults))
    for key, default in defaults.items():
        assert props[key]["default"] == default, (key, default, props[key]["default"])


def test_tpe_search_over_the_table3_space(tmp_path):
    images = _toy(n=16, npix=12, seed=3)
    roles = np.array(["train"] * 10 + ["val"] * 6)
    space = {k: dict(v) for k, v in u.TABLE3_SEARCH_SPACE.items()}
    space["n_filters"]["high"] = 10  # keep the trials tiny; the other ranges are the paper's
    summary = u.tune_unet(images, roles, {"y": ["y"]}, _tiny(max_epochs=1), tmp_path, search_space=space,
                          n_trials=3, n_startup_trials=2, device="cpu")
    assert summary["n_trials"] == 3 and (tmp_path / "tuning.json").exists()
    values = [t["value"] for t in summary["trials"]]
    assert summary["best_value"] == min(values)
    for t in summary["trials"]:
        assert 8 <= t["params"]["n_filters"] <= 10 and 1 <= t["params"]["kernel_size"] <= 6
        assert 1 <= t["params"]["n_layers"] <= 4 and 0.0 <= t["params"]["dropout"] <= 0.5
    assert {k: summary["best_config"][k] for k in space} == summary["best_params"]
    with pytest.raises(ValueError, match="no unet config keys"):
        u.tune_unet(images, roles, {"y": ["y"]}, _tiny(), tmp_path, search_space={"width": {"low": 1, "high": 2}})


def test_batchnorm_recalibration_removes_the_dropout_variance_shift():
    torch.manual_seed(0)
    net = u.build_unet({"y": 1}, _tiny(dropout=0.5))
    x = {"y": np.random.default_rng(0).standard_normal((32, 1, 16, 16)).astype(np.float32)}
    xt = {"y": torch.from_numpy(x["y"])}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(20):  # running statistics gathered with dropout on
        opt.zero_grad()
        net(xt).abs().mean().backward()
        opt.step()

    def reference():
        # what the network computes on these maps without dropout, with their own statistics
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout2d):
                m.eval()
        momenta = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        state = {k: v.clone() for k, v in net.state_dict().items()}
        with torch.no_grad():
            out = net(xt)
        net.load_state_dict(state)  # the reference pass must not move the running statistics
        assert all(m.momentum == mo for m, mo in zip([m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)], momenta))
        return out

    ref = reference()
    with torch.no_grad():
        before = net.eval()(xt)
    u._recalibrate_batchnorm(net, x, batch_size=32, device="cpu")
    with torch.no_grad():
        after = net(xt)
    assert not net.training
    shift_before, shift_after = float((before - ref).abs().mean()), float((after - ref).abs().mean())
    # what remains is BatchNorm's unbiased running variance against the biased batch variance
    assert shift_after < 0.01 * shift_before and shift_before > 1e-2, (shift_before, shift_after)


def test_rebin_conserves_counts_and_mass_and_averages_y():
    rng = np.random.default_rng(4)
    images = {"xray_0.5-1.2": rng.poisson(3.0, (2, 8, 8)).astype(np.float32), "y": rng.random((2, 8, 8)).astype(np.float32),
              "mass": rng.lognormal(size=(2, 8, 8)).astype(np.float32)}
    binned = u.rebin_channels(images, 2)
    assert all(v.shape == (2, 4, 4) for v in binned.values())
    for name in ("xray_0.5-1.2", "mass"):
        np.testing.assert_allclose(binned[name].sum((1, 2)), images[name].sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(binned["y"].mean((1, 2)), images["y"].mean((1, 2)), rtol=1e-5)
    assert binned["mass"][0, 0, 0] == pytest.approx(images["mass"][0, :2, :2].sum(), rel=1e-6)
    with pytest.raises(ValueError, match="cannot be binned by 3"):
        u.rebin_channels(images, 3)
