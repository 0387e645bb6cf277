"""Atomic outputs and the chunk-file layout every per-chunk product shares."""

from __future__ import annotations

import numpy as np
import pytest

from clustersbi.design import ChunkDesign, DesignSpec, Prior, SimulationRecord, chunk_design
from clustersbi.io import ChunkFile, atomic_path


@pytest.fixture(scope="module")
def design() -> ChunkDesign:
    spec = DesignSpec(
        outer=(Prior("Omega_m", r"\Omega_m", "uniform", 0.1, 0.5), Prior("sigma_8", r"\sigma_8", "uniform", 0.6, 1.0)),
        inner=(), n_simulations=16, n_inner=1, chunk_size=16, seed=5, split_fractions=(0.7, 0.1, 0.2, 0.0),
    )
    return ChunkDesign.from_params(chunk_design(spec, 0))


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="mid-write"):
        with atomic_path(tmp_path / "out" / "a.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed mid-write")
    assert list((tmp_path / "out").iterdir()) == []


def test_chunk_file_create_is_atomic(tmp_path, design):
    path = tmp_path / "chunk.h5"
    with pytest.raises(RuntimeError, match="mid-write"):
        with ChunkFile.create(path) as f:
            f.add_simulation(design.records[0])
            assert not path.exists(), "the file must not appear before the block ends"
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == [], "a failed block leaves neither the file nor its temporary"
    with ChunkFile.create(path) as f:
        f.add_simulation(design.records[0])
    assert [p.name for p in tmp_path.iterdir()] == ["chunk.h5"]


def test_chunk_file_iterates_in_index_order(tmp_path, design):
    sims, lightcones, slabs = [12, 3, 7, 10], [2, 0, 1], [11, 2, 0, 10]
    with ChunkFile.create(tmp_path / "chunk.h5") as f:
        f.write_attrs({"stage": "test"})
        for index in sims:
            g_sim = f.add_simulation(design.record(index), omega_m=0.3, h=0.7)
            for light in lightcones:
                g_lc = ChunkFile.add_lightcone(g_sim, light)
                for slab in slabs:
                    ChunkFile.add_slab(g_lc, slab, index=slab)["values"] = np.full(3, 100 * light + slab)
        ChunkFile.add_lightcone(f.simulation(design.record(5)), 0)  # a lightcone without slabs
    with ChunkFile.open(tmp_path / "chunk.h5") as f:
        assert f.attrs == {"stage": "test"}
        found = list(f.simulations())
        assert [int(attrs["index"]) for attrs, _ in found] == [3, 5, 7, 10, 12]
        for attrs, g_sim in found:
            record = design.record(int(attrs["index"]))
            assert SimulationRecord.from_attrs(attrs) == record
            if record.index == 5:
                ((light, g_lc),) = ChunkFile.lightcones(g_sim)
                with pytest.raises(ValueError, match="no slab_ groups"):
                    ChunkFile.slabs(g_lc)
                continue
            assert (attrs["omega_m"], attrs["h"]) == (0.3, 0.7)
            assert [light for light, _ in ChunkFile.lightcones(g_sim)] == [0, 1, 2]
            for light, g_lc in ChunkFile.lightcones(g_sim):
                assert g_lc.attrs["lightcone"] == light
                groups = ChunkFile.slabs(g_lc)
                assert [int(g.attrs["index"]) for g in groups] == [0, 2, 10, 11]
                assert [int(g["values"][0]) for g in groups] == [100 * light + s for s in (0, 2, 10, 11)]


def test_atomic_path_reclaims_a_killed_attempts_temporary(tmp_path):
    """A job killed mid-write (no exception handler ran) leaves ``.name.tmp``; the next attempt
    at the same target reuses and renames it, so nothing is left beside the outputs."""
    stale = tmp_path / ".a.h5.tmp"
    stale.write_text("half of a killed write")
    with atomic_path(tmp_path / "a.h5") as tmp:
        assert tmp == stale and tmp.read_bytes() == b"", "the next attempt starts from an empty file"
        tmp.write_text("complete")
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"] and (tmp_path / "a.h5").read_text() == "complete"


def test_torch_files_do_not_depend_on_the_temporary_name(tmp_path):
    """torch.save names its zip records after the file it writes: with a temporary name that is a
    function of the target, two saves of the same object are the same bytes."""
    import torch

    for run in ("one", "two"):
        with atomic_path(tmp_path / run / "model.pt") as tmp:
            torch.save({"w": torch.arange(4.0)}, tmp)
    assert (tmp_path / "one" / "model.pt").read_bytes() == (tmp_path / "two" / "model.pt").read_bytes()
