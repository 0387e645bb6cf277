"""Training sets larger than memory: chunked HDF5 rows, the lazy reader, streamed input
transforms, and training and compression under ``compress.max_memory_mb``.

References: numpy's own statistics on the whole array (streamed transforms), the in-memory
path (same seeds, same batches: lazy losses, weights and compressions must agree to float32
rounding), and tracemalloc's peak of traced allocations (numpy arrays, h5py reads) for the bound.
"""

from __future__ import annotations

import copy
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from clustersbi.compress import CompressorConfig, TrainingSet, compress, load_training_set, train_compressor, write_training_set
from clustersbi.compress.data import (
    CHUNK_BYTES,
    LazyTrainingSet,
    fit_input_transform,
    fit_input_transform_blocks,
    open_training_set,
    row_working_bytes,
)
from clustersbi.config import load_yaml, validate_config

torch.set_num_threads(1)

STATS_RTOL = 1e-12  # streamed vs whole-array float64 statistics (rounding of the merges only)
LOSS_RTOL = 1e-5  # lazy vs in-memory losses: same batches, transforms equal to float64 rounding
WEIGHT_ATOL = 1e-5  # ... and weights after training
BOUND_MB = 1.0  # the memory bound of the lazy tests [MiB]
N_ROWS, N_BINS = 240, 1024  # 240 rows of 1024 float64 values: a 1.9 MiB file, 11 MiB working set


def _spectra_set(n=N_ROWS, bins=N_BINS, seed=0) -> TrainingSet:
    """Power-law 'spectra' whose log is linear in theta (transform log10, per-bin standardisation)."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 1.0, size=(n, 2))
    slope = rng.normal(size=(2, bins))
    x = 10.0 ** (theta @ slope + 0.05 * rng.normal(size=(n, bins)) + 1.0)
    split = np.array(["train"] * n, dtype=object)
    split[::5], split[1::10] = "val", "test"
    return TrainingSet(theta, x, split.astype(str), ["a", "b"])


def _config(**kw) -> CompressorConfig:
    settings = dict(head_hidden=[32, 32], batch_size=16, max_epochs=3, patience=10, dropout=0.1, seed=3)
    settings.update(kw)
    return CompressorConfig(architecture="mlp", inputs={"x": {"extractor": "identity", "transform": "log10",
                                                               "standardize": "per_feature", "channel_axis": None}},
                            **settings)


@pytest.fixture(scope="module")
def spectra_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lazy") / "spectra.h5"
    write_training_set(path, _spectra_set())
    return path


def test_rows_are_chunked_and_read_in_any_order(spectra_file):
    ts = load_training_set(spectra_file)
    with h5py.File(spectra_file, "r") as f:
        rows = CHUNK_BYTES // (N_BINS * 8)
        assert f["x"].chunks == (rows, N_BINS), f"x chunks {f['x'].chunks}, expected whole rows of <= 1 MiB"
        assert f["theta"].chunks[0] == N_ROWS
    with LazyTrainingSet(spectra_file, BOUND_MB) as lazy:
        assert lazy.max_rows == int(2**20 // row_working_bytes((N_BINS,), 8)) == 21
        np.testing.assert_array_equal(lazy.theta, ts.theta)
        assert list(lazy.split) == list(ts.split) and lazy.param_names == ["a", "b"]
        for rows in ([7, 3, 200, 0], [10, 11, 12], [239]):
            np.testing.assert_array_equal(lazy.read(rows)["x"], ts.x[rows])
        assert lazy.max_rows_read == 4
        with pytest.raises(ValueError, match="max_memory_mb = 1.0 MiB holds 21"):
            lazy.read(np.arange(22))
        with pytest.raises(ValueError, match="repeated rows"):
            lazy.read([1, 1])
        with pytest.raises(IndexError, match="0..239"):
            lazy.read([240])
        view = lazy.select_parameters(["b"])
        np.testing.assert_array_equal(view.theta, ts.theta[:, [1]])
        view.read(np.arange(9))
        assert lazy.max_rows_read == 9, "a view's reads must count towards its file's maximum"
    with pytest.raises(ValueError, match="cannot hold one row"):
        LazyTrainingSet(spectra_file, 0.01)


def test_open_training_set_goes_lazy_only_beyond_the_bound(spectra_file):
    with open_training_set(spectra_file) as ts:
        assert isinstance(ts, TrainingSet)
    with open_training_set(spectra_file, 100.0) as ts:  # 11 MiB of working memory fit 100 MiB
        assert isinstance(ts, TrainingSet)
    with open_training_set(spectra_file, BOUND_MB) as ts:
        assert isinstance(ts, LazyTrainingSet)
        f = ts._file
    assert not f.id.valid, "the lazy set's file stays open after its context"


@pytest.mark.parametrize("standardize", ["global", "per_feature", "per_column", "minmax", "none"])
def test_streamed_transform_equals_the_whole_array_fit(standardize):
    rng = np.random.default_rng(4)
    x = rng.lognormal(size=(97, 6, 3))
    x[rng.random(x.shape) < 0.1] = np.nan if standardize == "per_column" else 1.0  # padding the column fit ignores
    whole = fit_input_transform(x, "log10p1", standardize)
    edges = [0, 1, 8, 40, 41, 97]  # blocks of 1, 7, 32, 1 and 56 rows
    streamed = fit_input_transform_blocks((x[a:b] for a, b in zip(edges[:-1], edges[1:])), "log10p1", standardize)
    for key in ("shift", "scale"):
        np.testing.assert_allclose(np.asarray(getattr(streamed, key)), np.asarray(getattr(whole, key)), rtol=STATS_RTOL,
                                   err_msg=f"{standardize} {key}")
        assert np.shape(getattr(streamed, key)) == np.shape(getattr(whole, key))
    # and both equal numpy's own statistics of the whole array
    fx = np.log10(1.0 + x)
    flat = fx.reshape(-1, fx.shape[-1])
    reference = {
        "global": (fx.mean(), fx.std()),
        "per_feature": (fx.mean(axis=0), fx.std(axis=0)),
        "per_column": (np.nanmean(flat, axis=0), np.nanstd(flat, axis=0)),
        "minmax": (fx.min(), fx.max() - fx.min()),
        "none": (0.0, 1.0),
    }[standardize]
    for key, expected in zip(("shift", "scale"), reference):
        np.testing.assert_allclose(np.asarray(getattr(whole, key)), expected, rtol=STATS_RTOL, err_msg=f"{standardize} {key} vs numpy")
    with pytest.raises(ValueError, match="no training rows"):
        fit_input_transform_blocks([], "none", standardize)


def _peak_mib(fn):
    """(result, peak of traced allocations during fn() above those before it [MiB])."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak / 2**20


@pytest.fixture(scope="module")
def trained_both_ways(spectra_file, tmp_path_factory):
    """The same training in memory and lazily under a 1 MiB bound, each with its traced peak."""
    out = tmp_path_factory.mktemp("trained")
    cfg = _config()
    # untraced warm-up: the first training's one-off imports and caches are no data
    train_compressor(_spectra_set(n=40), _config(max_epochs=1), out / "warm", device="cpu", resume=False)
    memory, memory_peak = _peak_mib(lambda: train_compressor(load_training_set(spectra_file), cfg, out / "memory",
                                                             device="cpu", resume=False))
    lazy = LazyTrainingSet(spectra_file, BOUND_MB)
    result, lazy_peak = _peak_mib(lambda: train_compressor(lazy, cfg, out / "lazy", device="cpu", resume=False))
    yield memory, memory_peak, result, lazy_peak, lazy
    lazy.close()


@pytest.mark.slow
def test_lazy_training_stays_under_the_bound(trained_both_ways):
    """Bound check by tracemalloc (every numpy array and h5py read of the data is traced; torch's
    own buffers, the network's weights and activations, are not) and by the reader's record."""
    _, memory_peak, _, lazy_peak, lazy = trained_both_ways
    assert memory_peak > 2 * BOUND_MB, f"in-memory training peaked at {memory_peak:.2f} MiB: the measure cannot tell"
    assert lazy_peak < BOUND_MB, f"lazy training peaked at {lazy_peak:.3f} MiB of data, bound {BOUND_MB} MiB"
    assert lazy.max_rows_read <= lazy.max_rows == 21


@pytest.mark.slow
def test_lazy_training_equals_in_memory_training(trained_both_ways):
    memory, _, lazy, _, _ = trained_both_ways
    for key in ("shift", "scale"):
        np.testing.assert_allclose(lazy.transforms["x"].shift if key == "shift" else lazy.transforms["x"].scale,
                                   memory.transforms["x"].shift if key == "shift" else memory.transforms["x"].scale,
                                   rtol=STATS_RTOL)
    for a, b in zip(memory.history, lazy.history):
        np.testing.assert_allclose([b["train_loss"], b["val_loss"]], [a["train_loss"], a["val_loss"]], rtol=LOSS_RTOL,
                                   err_msg=f"epoch {a['epoch']}")
    assert len(memory.history) == len(lazy.history) == 3 and lazy.best_epoch == memory.best_epoch
    assert memory.history[-1]["val_loss"] < 0.5 * memory.history[0]["train_loss"], "nothing learnt: a weak comparison"
    for (name, a), b in zip(memory.model.state_dict().items(), lazy.model.state_dict().values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=WEIGHT_ATOL, err_msg=name)


@pytest.mark.slow
def test_lazy_compression_equals_in_memory_compression(trained_both_ways, spectra_file):
    memory, _, _, _, lazy = trained_both_ways
    want, _ = compress(memory, load_training_set(spectra_file).x)
    got, peak = _peak_mib(lambda: compress(memory, lazy)[0])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert peak < BOUND_MB, f"lazy compression peaked at {peak:.3f} MiB of data"
    assert want.shape == (N_ROWS, 2) and np.corrcoef(want[:, 0], lazy.theta[:, 0])[0, 1] > 0.9


def test_batch_larger_than_the_bound_is_named(spectra_file, tmp_path):
    with LazyTrainingSet(spectra_file, BOUND_MB) as lazy:
        with pytest.raises(ValueError, match="compress.batch_size = 32 rows do not fit compress.max_memory_mb"):
            train_compressor(lazy, _config(batch_size=32), tmp_path, device="cpu")


def test_schema_bounds_max_memory_mb(repo):
    tiny = load_yaml(repo / "tests" / "config" / "tiny.yaml")
    schema = repo / "workflow" / "schemas" / "config.schema.yaml"
    assert validate_config(copy.deepcopy(tiny), schema)["compress"]["max_memory_mb"] is None
    ok = copy.deepcopy(tiny)
    ok["compress"]["max_memory_mb"] = 512
    assert validate_config(ok, schema)["compress"]["max_memory_mb"] == 512
    for bad in (0, -1, "lots"):
        config = copy.deepcopy(tiny)
        config["compress"]["max_memory_mb"] = bad
        with pytest.raises(ValueError, match="max_memory_mb"):
            validate_config(config, schema)


PRIORS = {"cosmology": [{"name": n, "label": n, "distribution": "uniform", "low": 0.0, "high": 1.0} for n in ("a", "b")]}


@pytest.mark.slow
def test_stages_train_and_compress_under_the_bound(repo, spectra_file, tmp_path):
    """The rules' stages with compress.max_memory_mb: lazy training, and a compressed file equal
    to the one the in-memory path writes."""
    from clustersbi.stages.compress import compress_stage, train_compressor_stage

    config = load_yaml(repo / "tests" / "config" / "tiny.yaml")
    config["compress"].update(max_epochs=2, batch_size=16, head_hidden=[32, 32], max_memory_mb=BOUND_MB)
    settings = validate_config(config, repo / "workflow" / "schemas" / "config.schema.yaml")["compress"]
    model = tmp_path / "compressor" / "model.pt"
    train_compressor_stage(spectra_file, "power_spectrum", settings, model, ["b"])
    assert "max_memory_mb" not in (model.parent / "config.json").read_text(), "a reading setting is no model setting"
    compress_stage(spectra_file, model, PRIORS, tmp_path / "lazy.h5", ["b"], max_memory_mb=BOUND_MB)
    compress_stage(spectra_file, model, PRIORS, tmp_path / "memory.h5", ["b"], max_memory_mb=None)
    lazy, memory = load_training_set(tmp_path / "lazy.h5"), load_training_set(tmp_path / "memory.h5")
    assert lazy.param_names == memory.param_names == ["b"] and lazy.x.shape == (N_ROWS, 1)
    np.testing.assert_allclose(lazy.x, memory.x, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(lazy.theta, memory.theta)
    assert list(lazy.split) == list(memory.split)


@pytest.mark.slow
def test_lazy_cnn_on_one_channel_fields_equals_in_memory(tmp_path):
    """A 3D CNN on one-channel fields (the axis added in memory has other strides than a lazily
    prepared batch's, and torch's convolution rounds by the strides): same losses, weights and
    compressions as in memory."""
    rng = np.random.default_rng(2)
    n, mesh = 96, 8
    theta = rng.uniform(size=(n, 2))
    x = np.expm1(rng.normal(0.3 * theta[:, :1, None, None], 0.5 + 0.5 * theta[:, 1:, None, None], size=(n, mesh, mesh, mesh)))
    split = np.where(np.arange(n) % 6 == 0, "val", "train")
    write_training_set(tmp_path / "fields.h5", TrainingSet(theta, x.astype(np.float32), split, ["a", "b"]))
    cfg = CompressorConfig(architecture="cnn3d", inputs={"x": {"extractor": "cnn3d", "transform": "none", "standardize": "global",
                                                               "channel_axis": None}},
                           n_channels_first=2, n_blocks=2, head_hidden=[16], batch_size=8, max_epochs=2, patience=5, seed=1)
    memory = train_compressor(load_training_set(tmp_path / "fields.h5"), cfg, tmp_path / "memory", device="cpu")
    with LazyTrainingSet(tmp_path / "fields.h5", 0.3) as lazy:  # 15 rows of 20 KiB working memory each
        assert lazy.max_rows == 15
        result = train_compressor(lazy, cfg, tmp_path / "lazy", device="cpu")
        got, _ = compress(memory, lazy)
    for a, b in zip(memory.history, result.history):
        np.testing.assert_allclose([b["train_loss"], b["val_loss"]], [a["train_loss"], a["val_loss"]], rtol=1e-6)
    for (name, a), b in zip(memory.model.state_dict().items(), result.model.state_dict().values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=WEIGHT_ATOL, rtol=0, err_msg=name)
    want, _ = compress(memory, load_training_set(tmp_path / "fields.h5").x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gather_writes_fields_one_mock_at_a_time(tmp_path):
    """The gather rule's writer: rows equal to the mocks' summaries, ordered by index across
    files, with a traced peak far below the training set's size."""
    from clustersbi.io import h5_write_attrs
    from clustersbi.stages.summaries import gather_training_set

    rng = np.random.default_rng(5)
    n, shape = 64, (2, 16, 16, 16)  # 64 mocks of 32 KiB: a 2 MiB training set
    fields = rng.normal(size=(n, *shape)).astype(np.float32)
    theta = rng.uniform(size=(n, 2))
    order = rng.permutation(n)
    files = [tmp_path / "chunk_0.h5", tmp_path / "chunk_1.h5"]
    for k, path in enumerate(files):
        with h5py.File(path, "w") as f:
            for i in order[k::2]:  # indices interleaved across the files, out of order
                g = f.create_group(f"mock_{i:07d}")
                h5_write_attrs(g, {"index": int(i), "theta": theta[i], "split": "train", "param_names": ["a", "b"]})
                g["fields"] = fields[i]
    _, peak = _peak_mib(lambda: gather_training_set(files, "fields", tmp_path / "fields.h5"))
    ts = load_training_set(tmp_path / "fields.h5")
    np.testing.assert_array_equal(ts.x, fields)
    np.testing.assert_array_equal(ts.theta, theta)
    assert peak < 0.5, f"gathering a 2 MiB training set peaked at {peak:.2f} MiB"
    with h5py.File(tmp_path / "fields.h5") as f:
        assert f["x"].chunks == (32, *shape)
