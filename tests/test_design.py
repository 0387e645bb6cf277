"""Sobol design: extensibility, nesting, splits, chunks, seeds."""

import h5py
import numpy as np
import pytest
from scipy.stats import qmc

from clustersbi.design import (
    SPLITS,
    ChunkDesign,
    DesignSpec,
    Prior,
    SeedStream,
    SimulationRecord,
    assign_split,
    chunk_design,
    chunk_indices,
    chunk_inner_rows,
    derive_seed,
    design_table,
    inner_parameters,
    n_chunks,
    outer_parameters,
    simulation_seed,
    sobol_unit_points,
)
from clustersbi.io import h5_read_attrs, h5_write_attrs

#: tolerance of split fractions over 4096 simulations (binomial sigma ~ 0.007 at p = 0.7)
SPLIT_FRACTION_ATOL = 0.03


def make_spec(n=32, n_inner=4, chunk=8, seed=11, nested=True):
    cosmo = (
        Prior("Omega_m", r"\Omega_m", "uniform", 0.1, 0.5),
        Prior("sigma_8", r"\sigma_8", "uniform", 0.6, 1.0),
    )
    astro = (
        Prior("a_X", "a_X", "uniform", -1.5, -1.2),
        Prior("A_SN1", "A_{SN1}", "loguniform", 0.25, 4.0),
    )
    return DesignSpec(
        outer=cosmo if nested else cosmo + astro,
        inner=astro if nested else (),
        n_simulations=n,
        n_inner=n_inner if nested else 1,
        chunk_size=chunk,
        seed=seed,
        split_fractions=(0.7, 0.1, 0.15, 0.05),
    )


def test_first_points_unchanged_when_design_grows():
    small, large = make_spec(n=20), make_spec(n=100)
    np.testing.assert_array_equal(outer_parameters(small, 0, 20), outer_parameters(large, 0, 100)[:20])
    pd_small, pd_large = design_table(small), design_table(large)
    np.testing.assert_array_equal(pd_small.to_numpy(), pd_large.iloc[: len(pd_small)].to_numpy())


def test_chunked_draws_equal_one_draw():
    spec = make_spec(n=40, chunk=7)
    whole = outer_parameters(spec, 0, 40)
    pieces = np.vstack([np.array(chunk_design(spec, c)["outer"]) for c in range(n_chunks(spec))])
    np.testing.assert_array_equal(whole, pieces)


def test_outer_sequence_is_scrambled_sobol():
    # 2^m points of a scrambled Sobol sequence have far lower discrepancy than random points.
    unit = sobol_unit_points(5, seed=3, start=0, count=256)
    rand = np.random.default_rng(3).random((256, 5))
    assert qmc.discrepancy(unit) < 0.2 * qmc.discrepancy(rand), (qmc.discrepancy(unit), qmc.discrepancy(rand))
    assert unit.min() >= 0 and unit.max() < 1


def test_values_respect_prior_bounds_and_loguniform():
    spec = make_spec(n=64, n_inner=64)
    outer = outer_parameters(spec, 0, 64)
    assert np.all((outer[:, 0] >= 0.1) & (outer[:, 0] <= 0.5))
    inner = np.vstack([inner_parameters(spec, i) for i in range(64)])
    a_sn1 = inner[:, 1]
    assert np.all((a_sn1 >= 0.25) & (a_sn1 <= 4.0))
    # log-uniform: ln A is uniform on [ln 0.25, ln 4], so its median is ln 1 = 0
    assert abs(np.median(np.log(a_sn1))) < 0.1, np.median(np.log(a_sn1))


def test_inner_sequences_are_independently_scrambled():
    spec = make_spec(n=4, n_inner=8)
    inner = [inner_parameters(spec, i) for i in range(4)]
    for i in range(1, 4):
        assert not np.allclose(inner[0], inner[i])
    # each inner sequence is itself a (low-discrepancy) Sobol set of n_inner points
    unit = (inner[0][:, 0] + 1.5) / 0.3
    assert np.histogram(unit, bins=8, range=(0, 1))[0].max() == 1  # 8 points, one per octile
    # and independent of the design size
    np.testing.assert_array_equal(inner_parameters(make_spec(n=50, n_inner=8), 2), inner[2])


def test_splits_deterministic_stable_and_proportional():
    fractions = (0.7, 0.1, 0.15, 0.05)
    splits = [assign_split(5, i, fractions) for i in range(4096)]
    assert splits == [assign_split(5, i, fractions) for i in range(4096)]
    counts = {s: splits.count(s) / len(splits) for s in SPLITS}
    for s, f in zip(SPLITS, fractions):
        assert abs(counts[s] - f) < SPLIT_FRACTION_ATOL, (s, counts[s], f)
    small, large = design_table(make_spec(n=16)), design_table(make_spec(n=64))
    assert list(small["split"]) == list(large["split"][: len(small)])


def test_mocks_of_one_simulation_share_split_and_seed():
    table = design_table(make_spec(n=16, n_inner=4))
    assert len(table) == 64
    grouped = table.groupby("simulation")
    assert (grouped["split"].nunique() == 1).all()
    assert (grouped["seed"].nunique() == 1).all()
    assert list(table["index"]) == list(range(64))


def test_chunks_cover_indices_once():
    spec = make_spec(n=30, chunk=8)
    assert n_chunks(spec) == 4
    covered = [i for c in range(4) for i in chunk_indices(spec, c)]
    assert covered == list(range(30))
    assert len(chunk_indices(spec, 3)) == 6
    with pytest.raises(ValueError, match="chunk 4"):
        chunk_indices(spec, 4)


def test_seeds_depend_on_global_seed_and_index_only():
    assert simulation_seed(1, 5) == simulation_seed(1, 5)
    seeds = {simulation_seed(1, i) for i in range(10000)}
    assert len(seeds) == 10000
    assert simulation_seed(1, 5) != simulation_seed(2, 5)
    assert derive_seed(1, 3, 5) == simulation_seed(1, 5)
    d = chunk_design(make_spec(n=16, chunk=8), 1)
    assert d["seeds"] == [simulation_seed(11, i) for i in range(8, 16)]


def test_joint_design_has_no_inner():
    spec = make_spec(nested=False)
    d = chunk_design(spec, 0)
    assert d["inner"] == [] and len(d["outer_names"]) == 4
    assert len(design_table(spec)) == spec.n_simulations


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"n_simulations": 0}, "n_simulations"),
        ({"split_fractions": (0.5, 0.1, 0.1, 0.1)}, "sum to 1"),
    ],
)
def test_spec_rejects_bad_values(kwargs, message):
    base = make_spec()
    values = {f: getattr(base, f) for f in base.__dataclass_fields__}
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        DesignSpec(**values)


def test_prior_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="'Omega_m'.*low"):
        Prior("Omega_m", "", "uniform", 0.5, 0.1)


def test_inner_rows_computed_in_the_job_match_the_dag_time_design():
    spec = make_spec(n=20, n_inner=4, chunk=8)
    light = chunk_design(spec, 1, with_inner=False)
    assert light["inner"] == []
    assert chunk_inner_rows(light) == chunk_design(spec, 1)["inner"]
    # a changed inner prior changes the light design too (Snakemake's params trigger)
    changed = DesignSpec(**{**vars(spec), "inner": (Prior("a_X", "a_X", "uniform", -1.6, -1.2), spec.inner[1])})
    assert chunk_design(changed, 1, with_inner=False) != light


# ----------------------------------------------------------------------------- seed streams


def test_slab_and_noise_streams_are_apart_from_the_others():
    # the stream numbers enter every seed: renumbering one would silently change all its seeds
    assert (SeedStream.SLAB, SeedStream.XRAY_NOISE) == (7, 8)
    streams = {name: getattr(SeedStream, name) for name in vars(SeedStream) if name.isupper()}
    assert len(set(streams.values())) == len(streams), f"two streams share a number: {streams}"
    for index in (0, 5, 123):
        for lightcone, slab in ((0, 0), (1, 3)):
            indices = (index, lightcone, slab)
            seeds = {
                "slab": derive_seed(11, SeedStream.SLAB, *indices),
                "noise": derive_seed(11, SeedStream.XRAY_NOISE, *indices),
                "lightcone": derive_seed(11, SeedStream.LIGHTCONE, *indices),
                "simulation": derive_seed(11, SeedStream.SIMULATION, *indices),
                "simulation seed": simulation_seed(11, index),
            }
            assert len(set(seeds.values())) == len(seeds), f"indices {indices}: seeds collide {seeds}"
    # slabs of one lightcone, and the same slab of two lightcones, get different seeds
    slab_seeds = {derive_seed(11, SeedStream.SLAB, 4, light, slab) for light in range(3) for slab in range(12)}
    assert len(slab_seeds) == 36


def test_stage_slab_seed_is_the_slab_stream():
    from clustersbi.stages.simulate import slab_seed

    assert slab_seed(11, 4, 1, 2) == derive_seed(11, SeedStream.SLAB, 4, 1, 2)


# ----------------------------------------------------------------------------- typed chunk records


@pytest.mark.parametrize("nested", [True, False])
def test_chunk_design_records_round_trip_the_params(nested):
    spec = make_spec(n=20, n_inner=4, chunk=8, nested=nested)
    params = chunk_design(spec, 1)
    design = ChunkDesign.from_params(params)
    assert (design.chunk, design.seed, len(design)) == (1, spec.seed, 8)
    assert design.indices == params["indices"] == list(range(8, 16))
    assert [r.seed for r in design] == params["seeds"]
    assert [r.split for r in design] == params["splits"]
    assert [r.parameters for r in design] == [dict(zip(params["outer_names"], row)) for row in params["outer"]]
    assert design.inner_names == tuple(params["inner_names"]) and design.n_inner == spec.n_inner
    if nested:
        assert [[list(row) for row in r.inner] for r in design] == chunk_inner_rows(params)
        first = design.record(9)
        assert first.theta == params["outer"][1] + params["inner"][1][0]
        assert first.theta_names == params["outer_names"] + params["inner_names"]
    else:
        assert all(r.inner == () for r in design)
        assert design.record(9).theta == params["outer"][1]
    assert design.record(9).group_name == "sim_000009"
    with pytest.raises(ValueError, match="simulation 3 is not in chunk 1"):
        design.record(3)


def test_mocks_of_a_nested_chunk_are_the_design_table_rows():
    """Each (simulation, inner row) mock has the design table's index, split and parameters."""
    spec = make_spec(n=20, n_inner=4, chunk=8, nested=True)
    design = ChunkDesign.from_params(chunk_design(spec, 1))
    table = design_table(spec).set_index("index")
    mocks = [m for r in design for m in r.mocks()]
    assert [m.index for m in mocks] == list(range(8 * 4, 16 * 4))
    for m in mocks:
        row = table.loc[m.index]
        assert (m.simulation, m.inner_index, m.split) == (row["simulation"], row["inner"], row["split"])
        assert m.parameters == pytest.approx({n: row[n] for n in m.names})
        assert m.to_attrs()["simulation"] == m.simulation and design.mock_record(m.index) == m
    plain = ChunkDesign.from_params(chunk_design(make_spec(n=20, n_inner=1, chunk=8, nested=False), 1))
    assert [r.mocks() for r in plain] == [[r] for r in plain] and plain.mock_record(9) == plain.record(9)
    with pytest.raises(ValueError, match="mock 3 is not in chunk 1"):
        design.mock_record(3)


def test_light_params_get_their_inner_rows_in_the_job():
    spec = make_spec(n=20, n_inner=4, chunk=8)
    light = chunk_design(spec, 0, with_inner=False)
    full = ChunkDesign.from_params(chunk_design(spec, 0))
    assert ChunkDesign.from_params(light) == full
    assert all(r.inner == () for r in ChunkDesign.from_params(light, with_inner=False))


@pytest.mark.parametrize("nested", [True, False])
def test_simulation_record_attrs_round_trip_through_hdf5(tmp_path, nested):
    record = ChunkDesign.from_params(chunk_design(make_spec(nested=nested), 0)).record(3)
    with h5py.File(tmp_path / "sim.h5", "w") as f:
        h5_write_attrs(f.create_group(record.group_name), record.to_attrs())
    with h5py.File(tmp_path / "sim.h5", "r") as f:
        stored = h5_read_attrs(f[record.group_name])
    back = SimulationRecord.from_attrs(stored)
    assert (back.index, back.seed, back.split) == (3, record.seed, record.split)
    # a stored record is the simulation's first mock: its inner row joins the outer values
    assert back.theta == record.theta and back.theta_names == record.theta_names
    assert back.to_attrs() == record.to_attrs()
    if not nested:
        assert back == record
    for name, value in zip(record.theta_names, record.theta):
        assert stored[f"param_{name}"] == value
    record.check_stored(stored, "sim.h5")  # unchanged: accepted


def test_check_stored_names_the_simulation_of_a_changed_parameter():
    record = ChunkDesign.from_params(chunk_design(make_spec(), 0)).record(5)
    stored = record.to_attrs()
    stored["param_sigma_8"] = stored["param_sigma_8"] * 1.01
    with pytest.raises(ValueError, match=r"gas\.h5: simulation 5 has param_sigma_8 .* stale"):
        record.check_stored(stored, "gas.h5")
    with pytest.raises(ValueError, match="theta"):
        SimulationRecord.from_attrs({k: v for k, v in stored.items() if k != "theta"})
