"""Every shipped config builds its DAG (a dry run of the real workflow).

The paper-scale presets are dry-run with their design cut to four chunks: the same rules and
parameters, a DAG that builds in seconds (48,000 simulations take ~2 minutes to plan, a
planning cost recorded in benchmarks/RESULTS.md, not a CI check).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

#: chunks kept of each preset's design
N_CHUNKS = 4


def _dry_run(repo, workdir, configfile):
    """``snakemake -n --quiet rules`` of the real workflow with ``configfile``, in ``workdir``."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir), "-n", "--quiet",
         "rules", "--configfile", str(configfile)],
        capture_output=True, text=True, timeout=300,
    )


def _configs(repo):
    return sorted((repo / "config").glob("*.yaml"))


@pytest.mark.parametrize("name", ["analytic", "config", "encoder", "fields", "fields_paper", "xod", "xod_realistic"])
def test_shipped_config_builds_its_dag(repo, tmp_path, name):
    path = repo / "config" / f"{name}.yaml"
    assert path in _configs(repo), f"config/{name}.yaml is not shipped; update this list"
    config = yaml.safe_load(path.read_text())
    design = config["design"]
    design["n_simulations"] = min(design["n_simulations"], N_CHUNKS * design["chunk_size"])
    cut = tmp_path / path.name
    cut.write_text(yaml.safe_dump(config))
    proc = _dry_run(repo, tmp_path, str(cut))
    assert proc.returncode == 0, f"config/{name}.yaml: {proc.stderr[-3000:]}"
    assert "train_npe" in proc.stdout + proc.stderr, "the dry run planned no inference"
    if (config.get("simulation") or {}).get("lightcone", {}).get("forward") == "fused":
        assert "fused_xray_maps" in proc.stdout + proc.stderr, f"config/{name}.yaml: no fused maps job"
        assert "paint_gas" not in proc.stdout + proc.stderr, f"config/{name}.yaml: forward fused paints gas files"


def test_cluster_images_preset_builds_its_dag(repo, tmp_path):
    proc = _dry_run(repo, tmp_path, str(repo / "config" / "cluster_images.yaml"))
    assert proc.returncode == 0, f"config/cluster_images.yaml: {proc.stderr[-3000:]}"
    assert "train_mass_cnn" in proc.stdout + proc.stderr, "the dry run planned no mass CNN"


@pytest.mark.parametrize("forward", ["staged", "fused"])
def test_cluster_images_from_the_simulations_plans_the_lightcone_chain(repo, tmp_path, forward):
    """images.source: simulation cuts clusters out of the run's own slabs: the dry run must plan
    the PM lightcones and the gas painting before the cutouts, not the generator, whichever rule
    makes the maps (forward: fused writes no particle or gas file; the staged rules make them)."""
    config = yaml.safe_load((repo / "config" / "cluster_images.yaml").read_text())
    config["images"]["source"] = "simulation"
    config.setdefault("simulation", {}).setdefault("lightcone", {})["forward"] = forward
    cut = tmp_path / "cluster_images_simulation.yaml"
    cut.write_text(yaml.safe_dump(config))
    proc = _dry_run(repo, tmp_path, str(cut))
    assert proc.returncode == 0, f"images.source simulation: {proc.stderr[-3000:]}"
    planned = proc.stdout + proc.stderr
    for rule in ("simulate_lightcone", "paint_gas", "cluster_cutouts", "train_mass_cnn"):
        assert rule in planned, f"the dry run did not plan {rule}"


def test_every_shipped_config_is_listed(repo):
    listed = {"analytic", "cluster_images", "config", "encoder", "fields", "fields_paper", "xod", "xod_realistic"}
    assert {p.stem for p in _configs(repo)} == listed
