"""The scaling-relation summary stage per chunk and the gathered training sets."""

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi.compress.data import load_training_set
from clustersbi.design import ChunkDesign, DesignSpec, Prior, SeedStream, chunk_design, derive_seed
from clustersbi.fof import HALO_COLUMNS
from clustersbi.io import ChunkFile, h5_read_attrs
from clustersbi.stages.summaries import gather_training_set, summarise_chunk

BOX = 500.0
SHOT_NOISE_RTOL = 0.15  # P(k) of ~2000 Poisson-placed clusters averaged over the band

SCALING = {"threshold_erg_s": 3e43, "scatter_base": "ln", "mean_convention": "median",
           "fiducial": {"a_X": -1.36, "b_X": 1.88, "c_X": -0.29, "sigma_tot": 0.328}}
SUMMARIES = {
    "abundance": {"thresholds": {"low": 3e43, "high": 3e44, "n": 10}},
    "power_spectrum": {"n_mesh": 32, "assignment": "pcs", "interlacing": True, "dk_in_kf": 1.0,
                       "k_min_in_kf": 1.0, "workers": 1},
    "fields": {"n_mesh": 16, "assignment": "cic", "variants": ["number", "luminosity_weighted"],
               "luminosity_cuts_erg_s": [3e43]},
}


def write_halos(path, design_params, halos_by_index):
    """A halo file in the simulate stage's layout: per simulation its record (outer parameters
    only, as simulate_chunk builds it), the box, and one dataset per halo column."""
    design = ChunkDesign.from_params(design_params, with_inner=False)
    with ChunkFile.create(path) as f:
        for index, table in halos_by_index.items():
            g = f.add_simulation(design.record(index), box_mpc_h=BOX, n_halos=len(table))
            for column in HALO_COLUMNS:
                g[column] = table[column].to_numpy()


def random_halos(rng, n, log_m_low, log_m_high):
    return pd.DataFrame({
        "x": rng.uniform(0, BOX, n), "y": rng.uniform(0, BOX, n), "z": rng.uniform(0, BOX, n),
        "vx": np.zeros(n), "vy": np.zeros(n), "vz": np.zeros(n),
        "mass_msun_h": 10 ** rng.uniform(log_m_low, log_m_high, n), "n_part": np.full(n, 100),
    })


@pytest.fixture(scope="module")
def design():
    spec = DesignSpec(
        outer=(Prior("Omega_m", "", "uniform", 0.2, 0.4),),
        inner=(Prior("a_X", "", "uniform", -1.4, -1.3),),
        n_simulations=2, n_inner=2, chunk_size=2, seed=3, split_fractions=(0.5, 0.5, 0.0, 0.0),
    )
    return chunk_design(spec, 0, with_inner=False)


@pytest.fixture(scope="module")
def chunk(tmp_path_factory, design):
    tmp = tmp_path_factory.mktemp("summaries")
    rng = np.random.default_rng(1)
    # simulation 0: massive haloes (clusters); simulation 1: groups far below the threshold
    write_halos(tmp / "halos.h5", design, {0: random_halos(rng, 4000, 14.3, 15.0), 1: random_halos(rng, 50, 12.0, 12.5)})
    summarise_chunk(tmp / "halos.h5", design, 3, SCALING, SUMMARIES, tmp / "catalogs.h5", tmp / "summaries.h5")
    return tmp


def test_clusters_and_summaries(chunk):
    with h5py.File(chunk / "catalogs.h5") as cat, h5py.File(chunk / "summaries.h5") as summ:
        assert sorted(cat) == ["mock_0000000", "mock_0000001"]  # simulation 1's mocks are empty
        l_x = cat["mock_0000000"]["l_x_erg_s"][()]
        assert l_x.min() >= 3e43
        abundance = summ["mock_0000000"]["abundance"][()]
        assert abundance[0] == l_x.size, "the first threshold is the selection threshold"
        thresholds = np.geomspace(3e43, 3e44, 10)
        np.testing.assert_array_equal(abundance, [(l_x >= t).sum() for t in thresholds])
        # clusters placed at random: P(k) is the shot noise 1/n
        pk = summ["mock_0000000"]["power_spectrum"][()]
        shot = summ["mock_0000000"].attrs["shot_noise_mpc_h3"]
        np.testing.assert_allclose(shot, BOX**3 / l_x.size, rtol=1e-6)
        assert abs(pk.mean() / shot - 1) < SHOT_NOISE_RTOL, pk.mean() / shot
        assert summ["mock_0000000"]["fields"].shape == (2, 16, 16, 16)
        assert "empty" in summ["mock_0000002"].attrs and "power_spectrum" not in summ["mock_0000002"]


def test_gather_leaves_out_and_lists_empty_mocks(chunk):
    gather_training_set([chunk / "summaries.h5"], "abundance+power_spectrum", chunk / "train.h5")
    ts = load_training_set(chunk / "train.h5")
    assert ts.theta.shape == (2, 2) and ts.param_names == ["Omega_m", "a_X"]
    assert set(ts.x) == {"abundance", "power_spectrum"}
    with h5py.File(chunk / "train.h5") as f:
        assert list(f.attrs["excluded_empty_mocks"]) == [2, 3]


def test_mocks_carry_their_design_point_and_scatter_seed(chunk, design):
    records = ChunkDesign.from_params(design)
    with h5py.File(chunk / "summaries.h5") as summ:
        for record in records:
            for j, inner in enumerate(record.inner):
                attrs = h5_read_attrs(summ[f"mock_{record.index * 2 + j:07d}"])
                assert (attrs["simulation"], attrs["inner"], attrs["split"]) == (record.index, j, record.split)
                assert attrs["seed"] == derive_seed(3, SeedStream.SCALING_SCATTER, record.index, j)
                np.testing.assert_array_equal(attrs["theta"], list(record.values) + list(inner))
                assert list(attrs["param_names"]) == ["Omega_m", "a_X"]


def test_stale_halo_file_is_rejected(chunk, design, tmp_path):
    other = {**design, "outer": [[row[0] + 0.01] for row in design["outer"]]}
    with pytest.raises(ValueError, match="simulation 0 has param_Omega_m .* stale"):
        summarise_chunk(chunk / "halos.h5", other, 3, SCALING, SUMMARIES, tmp_path / "c.h5", tmp_path / "s.h5")
    assert list(tmp_path.iterdir()) == []
