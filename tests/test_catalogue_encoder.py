"""The interpretable per-cluster encoder (Ntampaka et al., sect. 3.1): its invariances (equal-
brightness permutations, padding, a cluster's terse value independent of the others), empty
catalogues, the training machinery, and a toy whose answer is known: catalogues whose number
and masses follow a mass function of one parameter; the terse value must track the mass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustersbi.compress import CompressorConfig, TrainingSet, build_compressor, compress, load_compressor, train_compressor
from clustersbi.compress.data import fit_input_transform, apply_input_transform
from clustersbi.compress.networks import CatalogueEncoder

torch.set_num_threads(2)

#: the acceptance of issue 15: after training on the toy, |corr(terse, log M)| >= 0.9
TERSE_MASS_RHO_MIN = 0.9


def _encoder(n_features=3, supplementary=(2,), seed=0, **kw):
    torch.manual_seed(seed)
    return CatalogueEncoder((8, n_features), hidden=[16, 8], channels=[8, 8], supplementary=supplementary, **kw).eval()


def _padded(rows: list[np.ndarray], n_max: int) -> torch.Tensor:
    """Catalogues (n_i, F) as one NaN-padded (N, n_max, F) tensor."""
    f = rows[0].shape[1]
    out = np.full((len(rows), n_max, f), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.tensor(out, dtype=torch.float32)


def test_permuting_equal_brightness_clusters_changes_nothing():
    rng = np.random.default_rng(0)
    cat = rng.normal(size=(7, 3))
    cat[2, 0] = cat[5, 0] = cat[6, 0] = 0.3  # three clusters of equal brightness (column 0)
    enc = _encoder()
    ref = enc(_padded([cat], 10))
    for perm in ([0, 1, 5, 3, 4, 6, 2], [6, 1, 2, 3, 4, 5, 0], list(rng.permutation(7))):
        out = enc(_padded([cat[perm]], 10))
        assert torch.allclose(out, ref, atol=1e-6), perm
    # a shuffle of any clusters changes nothing either: the encoder sorts by brightness itself
    assert torch.allclose(enc(_padded([cat[rng.permutation(7)]], 10)), ref, atol=1e-6)


def test_a_clusters_terse_value_does_not_depend_on_the_others():
    rng = np.random.default_rng(1)
    cats = rng.normal(size=(4, 9, 3))
    enc = _encoder()
    t0, _ = enc.terse(torch.tensor(cats, dtype=torch.float32))
    other = cats.copy()
    other[:, 1:] = rng.normal(size=(4, 8, 3)) * 5  # every other cluster changed
    t1, _ = enc.terse(torch.tensor(other, dtype=torch.float32))
    assert torch.allclose(t0[:, 0], t1[:, 0])
    # and it is the repeated network of the cluster's own row alone
    alone, _ = enc.terse(torch.tensor(cats[:, :1], dtype=torch.float32))
    assert torch.allclose(alone[:, 0], t0[:, 0], atol=1e-6)
    # the supplementary column (2) enters after the terse layer, not the terse value
    supp = cats.copy()
    supp[..., 2] += 3.0
    t2, _ = enc.terse(torch.tensor(supp, dtype=torch.float32))
    assert torch.allclose(t2, t0)
    assert not torch.allclose(enc(torch.tensor(supp, dtype=torch.float32)), enc(torch.tensor(cats, dtype=torch.float32)))


def test_gradient_of_a_terse_value_reaches_only_its_own_cluster():
    cats = torch.tensor(np.random.default_rng(2).normal(size=(1, 6, 3)), dtype=torch.float32, requires_grad=True)
    enc = _encoder()
    t, _ = enc.terse(cats)
    (g,) = torch.autograd.grad(t[0, 3], cats)
    assert torch.count_nonzero(g[0, [0, 1, 2, 4, 5]]) == 0 and torch.count_nonzero(g[0, 3, :2]) > 0
    assert g[0, 3, 2] == 0  # supplementary


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_padding_does_not_change_the_output(n):
    cat = np.random.default_rng(n).normal(size=(n, 3))
    enc = _encoder()
    outs = [enc(_padded([cat], n_max)) for n_max in (n, n + 1, n + 7, 64)]
    for out in outs[1:]:
        assert torch.allclose(out, outs[0], atol=1e-6)
    # batched with longer catalogues: the same row
    longer = np.random.default_rng(99).normal(size=(40, 3))
    assert torch.allclose(enc(_padded([longer, cat], 40))[1], outs[0][0], atol=1e-6)


def test_empty_catalogues_are_handled_explicitly():
    enc = _encoder()
    empty = torch.full((3, 5, 3), float("nan"))
    out = enc(empty)
    assert torch.isfinite(out).all()
    assert torch.all(out[:, :-2] == 0) and torch.all(out[:, -2] == 0) and torch.all(out[:, -1] == 1)
    zero_length = torch.zeros((2, 0, 3))
    assert torch.equal(enc(zero_length), out[:2])
    one = enc(_padded([np.ones((1, 3))], 5))
    assert one[0, -1] == 0 and torch.isclose(one[0, -2], torch.log(torch.tensor(2.0)))


def test_per_column_standardisation_ignores_padding():
    rows = [np.array([[1.0, 10.0], [3.0, 30.0]]), np.array([[5.0, 50.0]])]
    x = _padded(rows, 4).numpy().astype(float)
    t = fit_input_transform(x, "none", "per_column")
    assert np.allclose(t.shift, [3.0, 30.0]) and np.allclose(t.scale, np.std([1, 3, 5]) * np.array([1, 10]))
    y = apply_input_transform(x, t)
    assert np.isnan(y[0, 2:]).all() and np.isnan(y[1, 1:]).all() and np.isfinite(y[0, :2]).all()


# --------------------------------------------------------------------------- a toy with a known answer

def toy_catalogues(n_mocks: int, seed: int, n_max: int = 80):
    """Catalogues of a one-parameter mass function: s in [0.6, 1.0] sets the number of clusters
    above log10 M = 14 (Poisson, mean 25 (s / 0.8)^3) and the slope of their mass function
    (log10 M - 14 exponential with scale 0.35 s / 0.8). Features per cluster: log L = 1.5 (log M - 14)
    + N(0, 0.1) (the brightness) and log T = 0.6 (log M - 14) + N(0, 0.05). Returns theta (N, 1),
    x (N, n_max, 2) NaN-padded, log M (N, n_max) NaN-padded."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.6, 1.0, n_mocks)
    x = np.full((n_mocks, n_max, 2), np.nan)
    log_m = np.full((n_mocks, n_max), np.nan)
    for i, si in enumerate(s):
        n = min(rng.poisson(25.0 * (si / 0.8) ** 3), n_max)
        dm = rng.exponential(0.35 * si / 0.8, n)
        log_m[i, :n] = 14.0 + dm
        x[i, :n, 0] = 1.5 * dm + rng.normal(0, 0.1, n)
        x[i, :n, 1] = 0.6 * dm + rng.normal(0, 0.05, n)
    return s[:, None], x, log_m


def _toy_config(**kw) -> CompressorConfig:
    return CompressorConfig(
        architecture="catalogue_encoder",
        inputs={"x": {"extractor": "catalogue_encoder", "transform": "none", "standardize": "per_column", "channel_axis": None}},
        encoder={"hidden": [32, 16], "channels": [16, 16], "sort_column": 0, "supplementary": []},
        head_hidden=[32], dropout=0.0, batch_size=32, max_epochs=40, patience=40, lr=3e-3, **kw)


def test_toy_terse_value_tracks_the_mass(tmp_path):
    theta, x, log_m = toy_catalogues(480, seed=3)
    split = np.array(["train"] * 400 + ["val"] * 80)
    ts = TrainingSet(theta, x, split, ["s"])
    result = train_compressor(ts, _toy_config(), tmp_path, device="cpu")
    # the count alone predicts s; with the masses the estimate must be good
    est, _ = compress(result, x[400:])
    r2 = 1 - np.mean((est[:, 0] - theta[400:, 0]) ** 2) / np.var(theta[400:, 0])
    assert r2 > 0.7, r2
    enc = result.model.extractors["x"]
    inputs = torch.from_numpy(apply_input_transform(x[400:], result.transforms["x"]))
    with torch.no_grad():
        terse, mask = enc.terse(inputs)
    rho = np.corrcoef(terse[mask].numpy(), log_m[400:][mask.numpy()])[0, 1]
    assert abs(rho) >= TERSE_MASS_RHO_MIN, rho
    # the checkpoint rebuilds the same network
    loaded = load_compressor(tmp_path, device="cpu")
    assert np.allclose(compress(loaded, x[400:])[0], est, atol=1e-5)


def test_supplementary_columns_and_gaussian_nll_shapes():
    cfg = CompressorConfig(
        architecture="catalogue_encoder", loss="gaussian_nll",
        inputs={"x": {"extractor": "catalogue_encoder", "transform": "none", "standardize": "per_column", "channel_axis": None}},
        encoder={"supplementary": [2], "sort_column": 1}, head_hidden=[8])
    model = build_compressor(cfg, {"x": (6, 3)}, 2).eval()
    out = model(torch.tensor(np.random.default_rng(0).normal(size=(4, 6, 3)), dtype=torch.float32))
    assert out.shape == (4, 4)
    with pytest.raises(ValueError, match="unknown catalogue_encoder settings"):
        build_compressor(CompressorConfig(**{**cfg.to_dict(), "encoder": {"widths": [3]}}), {"x": (6, 3)}, 2)
    with pytest.raises(ValueError, match="outside the 3 features"):
        build_compressor(CompressorConfig(**{**cfg.to_dict(), "encoder": {"supplementary": [3]}}), {"x": (6, 3)}, 2)
