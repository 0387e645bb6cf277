"""The workflow itself, run by Snakemake on the tiny config in a temporary directory."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from clustersbi.config import load_yaml, validate_config
from clustersbi.cosmology import sigma_r
from clustersbi.design import DesignSpec, design_table
from workflow_runs import dry_run_jobs, h5_content, output_files, snakemake, snakemake_command

pytestmark = pytest.mark.slow

#: copy of the tiny run's results as they were when it finished (see ``tiny_run``)
FIRST_RUN = "first_run_results"
#: how long the killed run may take to reach its kill point
KILL_POINT_TIMEOUT_S = 900



def planned_outputs(log: str, rule: str) -> set[str]:
    """Outputs of the jobs of ``rule`` that a Snakemake log (or dry run) lists."""
    return set(re.findall(rf"^(?:local)?rule {rule}:\n\s+output: (\S+)", log, flags=re.MULTILINE))






def expected_design(repo, tiny):
    return validate_config(yaml.safe_load(yaml.safe_dump(tiny)), repo / "workflow/schemas/config.schema.yaml")["design"]


def old_paths(names) -> list[str]:
    return [f"results/linear_power/{name}" for name in names]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tiny(repo):
    return load_yaml(repo / "tests" / "config" / "tiny.yaml")


@pytest.fixture(scope="module")
def tiny_run(repo, tiny, tmp_path_factory):
    """One full run of the default target on the tiny config.

    Its results are also copied, as the run left them, to ``FIRST_RUN`` in the work directory
    (later tests grow the design in place): the reference of the killed-and-resumed run.
    """
    workdir = tmp_path_factory.mktemp("tiny_run")
    configfile = write_config(workdir / "config.yaml", tiny)
    proc = snakemake(repo, workdir, configfile)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shutil.copytree(workdir / "results", workdir / FIRST_RUN)
    return workdir, configfile


def test_killed_run_resumes_to_the_same_bytes(repo, tiny, tiny_run, tmp_path):
    """SIGKILL of the whole run (Snakemake and its jobs, as a crash or ``kill -9`` of the process
    group) while a job runs, then ``--unlock`` and ``--rerun-incomplete``: every output equals the
    uninterrupted run's byte for byte (HDF5 files included; timings in results/benchmarks aside),
    and no temporary is left beside them.

    To keep it cheap, the run starts from a copy of the finished tiny run (modification times
    kept) with one chunk's box simulations and summaries removed: the killed job is that chunk's
    simulate_boxes, the resumed run redoes it, its summaries and the training sets.
    """
    configfile = write_config(tmp_path / "config.yaml", tiny)
    shutil.copytree(tiny_run[0] / FIRST_RUN, tmp_path / "results")
    kinds = validate_config(copy.deepcopy(tiny), repo / "workflow/schemas/config.schema.yaml")["summaries"]["kinds"]
    targets = [f"results/training/{kind}.h5" for kind in kinds]
    # the last chunk's halos, its summaries and the training sets (Snakemake does not redo a
    # missing intermediate whose products exist)
    redone = sorted((tmp_path / "results" / "halos").glob("chunk_*.h5"))[-1]
    redone.unlink()
    (tmp_path / "results" / "summaries" / redone.name).unlink()
    for target in targets:
        (tmp_path / target).unlink()
    incomplete = tmp_path / ".snakemake" / "incomplete"
    with open(tmp_path / "killed.log", "w") as log:
        first = subprocess.Popen(snakemake_command(repo, tmp_path, configfile, *targets), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        # kill point: a job in flight (Snakemake's incomplete marker)
        deadline = time.monotonic() + KILL_POINT_TIMEOUT_S
        while first.poll() is None and time.monotonic() < deadline:
            if incomplete.is_dir() and any(incomplete.iterdir()):
                break
            time.sleep(0.05)
        assert first.poll() is None, f"the run ended (status {first.returncode}) before the kill point"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = sorted(base64.urlsafe_b64decode(p.name).decode() for p in incomplete.iterdir())
    assert killed, "no job was running when the run was killed"
    unlock = snakemake(repo, tmp_path, configfile, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = snakemake(repo, tmp_path, configfile, "--rerun-incomplete", *targets)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert redone.exists() and "rule simulate_boxes:" in resumed.stdout + resumed.stderr, "the removed chunk was not redone"
    reference, outputs = output_files(tiny_run[0] / FIRST_RUN), output_files(tmp_path / "results")
    assert sorted(outputs) == sorted(reference), (
        f"killed during {killed}: extra {sorted(set(outputs) - set(reference))}, "
        f"missing {sorted(set(reference) - set(outputs))}"
    )
    differ = [name for name in reference if reference[name].read_bytes() != outputs[name].read_bytes()]
    # an HDF5 file that differs in bytes only (HDF5's own metadata) would pass this second check
    content = [name for name in differ if not name.endswith(".h5") or h5_content(reference[name]) != h5_content(outputs[name])]
    assert not differ, f"killed during {killed}: bytes differ in {differ} (content too in {content})"


def test_design_table_content(repo, tiny, tiny_run):
    workdir, _ = tiny_run
    table = pd.read_csv(workdir / "results" / "design" / "parameters.csv")
    expected = design_table(DesignSpec.from_config(validate_config(dict(tiny), repo / "workflow/schemas/config.schema.yaml")))
    assert list(table.columns) == list(expected.columns)
    np.testing.assert_allclose(table["Omega_m"], expected["Omega_m"], rtol=1e-7)
    assert list(table["split"]) == list(expected["split"])
    assert (workdir / "results" / "plots" / "design.png").stat().st_size > 10_000
    resolved = yaml.safe_load((workdir / "results" / "config" / "resolved.yaml").read_text())
    assert resolved["design"] == expected_design(repo, tiny) and resolved["simulation"]["n_mesh"] == 32


def test_linear_power_files(tiny_run, tiny):
    workdir, _ = tiny_run
    files = sorted((workdir / "results" / "linear_power").glob("chunk_*.h5"))
    assert [f.name for f in files] == [f"chunk_{i:05d}.h5" for i in range(4)]
    with h5py.File(files[1], "r") as f:
        sims = sorted(n for n in f if n.startswith("sim_"))
        assert sims == ["sim_000003", "sim_000004", "sim_000005"]
        k = f["k_h_mpc"][:]
        z0 = int(np.argmin(np.abs(f["redshifts"][:])))
        for name in sims:
            target = f[name].attrs["param_sigma_8"]
            assert abs(sigma_r(k, f[name]["pk"][z0]) / target - 1) < 2e-3
    assert (workdir / "results" / "plots" / "linear_power.png").exists()


def test_growing_the_design_runs_only_new_chunks(repo, tiny, tiny_run):
    workdir, _ = tiny_run
    old = {p.name: p.stat().st_mtime_ns for p in (workdir / "results" / "linear_power").glob("*.h5")}
    grown = dict(tiny, design=dict(tiny["design"], n_simulations=18))
    configfile = write_config(workdir / "grown.yaml", grown)
    expected = {f"results/linear_power/chunk_{i:05d}.h5" for i in (4, 5)}
    # the default target would also retrain the networks on the larger design; the
    # linear power files are the per-chunk products whose reruns this test is about
    targets = ["results/design/parameters.csv", *sorted(expected | set(old_paths(old)))]
    dry = snakemake(repo, workdir, configfile, "-n", *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned_outputs(dry.stdout + dry.stderr, "linear_power") == expected
    proc = snakemake(repo, workdir, configfile, *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_outputs(proc.stdout + proc.stderr, "linear_power") == expected
    new = {p.name: p.stat().st_mtime_ns for p in (workdir / "results" / "linear_power").glob("*.h5")}
    assert {k: new[k] for k in old} == old
    assert set(new) == {f"chunk_{i:05d}.h5" for i in range(6)}
    again = snakemake(repo, workdir, configfile, "-n", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_halo_catalogues_and_validation_spectra(tiny_run):
    from clustersbi.products import read_halo_file

    workdir, _ = tiny_run
    halos = read_halo_file(workdir / "results" / "halos" / "chunk_00000.h5")
    assert sorted(halos) == [0, 1, 2]
    for index, (table, attrs) in halos.items():
        assert len(table) == attrs["n_halos"] > 0
        assert (table["n_part"] >= 8).all() and table["mass_msun_h"].is_monotonic_decreasing
        assert table[["x", "y", "z"]].to_numpy().max() < attrs["box_mpc_h"]
    with h5py.File(workdir / "results" / "halos" / "chunk_00000.h5", "r") as f:
        # linear growth on the largest scales of a 200 Mpc/h box: within cosmic variance
        ratio = f["sim_000000"]["growth_ratio"][:3]
        assert np.all(np.abs(ratio - 1) < 0.3), ratio


def test_training_sets_and_summaries(repo, tiny_run, tiny):
    from clustersbi.compress.data import load_training_set

    workdir, _ = tiny_run
    n_mocks = tiny["design"]["n_simulations"] * tiny["design"]["n_inner"]
    abundance = load_training_set(workdir / "results" / "training" / "abundance.h5")
    assert abundance.theta.shape == (n_mocks, 4)
    assert abundance.param_names == ["Omega_m", "sigma_8", "a_X", "sigma_tot"]
    counts = abundance.x
    assert counts.shape == (n_mocks, 5)
    assert np.all(np.diff(counts, axis=1) <= 0), "cumulative counts must not grow with the threshold"
    # (not the CSV: another test grows the design in the same directory)
    table = design_table(DesignSpec.from_config(validate_config(dict(tiny), repo / "workflow/schemas/config.schema.yaml")))
    np.testing.assert_allclose(abundance.theta[:, 0], table["Omega_m"], rtol=1e-7)
    assert list(abundance.split) == list(table["split"])
    fields = load_training_set(workdir / "results" / "training" / "fields.h5")
    assert fields.x.shape == (n_mocks, 4, 16, 16, 16)
    combined = load_training_set(workdir / "results" / "training" / "abundance+power_spectrum.h5")
    assert set(combined.x) == {"abundance", "power_spectrum"}
    for name in ("luminosity_functions", "abundance", "power_spectra", "fields"):
        assert (workdir / "results" / "plots" / f"{name}.png").stat().st_size > 10_000


def test_inference_outputs(tiny_run):
    import json

    workdir, _ = tiny_run
    out = workdir / "results" / "inference" / "abundance+power_spectrum"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_parameter"]) == {"Omega_m", "sigma_8", "a_X", "ln_sigma_tot"}
    calibration = json.loads((out / "calibration.json").read_text())
    ranks = np.array(calibration["sbc_ranks"])
    assert ranks.shape[1] == 4 and ranks.min() >= 0 and ranks.max() <= calibration["n_samples"]
    with h5py.File(out / "samples.h5", "r") as f:
        obs = f["observation_samples"][()]
        assert np.all(np.isfinite(obs))
        # samples stay inside the prior box (ln sigma_tot in [ln 0.1, ln 0.6])
        assert obs[:, 3].min() >= np.log(0.1) - 1e-6 and obs[:, 3].max() <= np.log(0.6) + 1e-6
    for plot in ("predicted_vs_true", "corner", "sbc_ranks", "tarp", "training"):
        assert (workdir / "results" / "plots" / "inference" / f"abundance+power_spectrum_{plot}.png").exists()


def test_logs_and_benchmarks_mirror_the_outputs(tiny_run):
    """logs/<output path without results/>.log, results/benchmarks/<same>.tsv (rules renamed)."""
    workdir, _ = tiny_run
    summary = "abundance+power_spectrum"
    for log in ("halos/chunk_00000.log", "summaries/chunk_00003.log", f"training/{summary}.log",
                f"models/compressor/{summary}.log", f"compressed/{summary}.log", f"models/npe/{summary}.log",
                f"inference/{summary}.log", "linear_power/chunk_00000.log", "design/parameters.log"):
        assert (workdir / "logs" / log).is_file(), f"logs/{log} missing"
    for bench in ("halos/chunk_00000.tsv", f"models/compressor/{summary}.tsv", f"models/npe/{summary}.tsv",
                  f"inference/{summary}.tsv"):
        table = pd.read_csv(workdir / "results" / "benchmarks" / bench, sep="\t")
        assert len(table) == 1 and table["s"].iloc[0] > 0, f"results/benchmarks/{bench}: {table}"
    # the resume point of a completed training is gone; the rule does not declare it
    assert not (workdir / "results" / "models" / "compressor" / summary / "last.pt").exists()


def test_logs_keep_the_package_log_lines(tiny_run):
    """The scripts' one preamble routes the package's logging into the rule's log."""
    workdir, _ = tiny_run
    log = (workdir / "logs" / "linear_power" / "chunk_00000.log").read_text()
    assert "clustersbi.stages.cosmology INFO: chunk 0: 3 spectra written" in log, log[-2000:]


def test_report_builds_with_every_figure(repo, tiny_run):
    """snakemake --report on the finished tiny run: one HTML with the stage figures and captions."""
    import zipfile

    workdir, configfile = tiny_run
    report = workdir / "report.zip"
    proc = snakemake(repo, workdir, configfile, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
    for figure in ("design.png", "linear_power.png", "halo_mass_function.png", "abundance.png",
                   "abundance+power_spectrum_tarp.png"):
        assert any(n.endswith(figure) for n in names), f"{figure} not in the report ({len(names)} files)"


def test_lightcone_geometry_does_not_rerun_box_simulations(repo, tiny, tiny_run):
    """simulate_boxes' params exclude simulation.lightcone: a new field of view reruns no box.

    Dry runs against the finished run; the control edit (the number of PM steps) must rerun
    every box, so the parse of the plan is known to see them.
    """
    workdir, _ = tiny_run
    halos = [f"results/halos/chunk_{i:05d}.h5" for i in range(4)]
    fov = copy.deepcopy(tiny)
    fov["simulation"]["lightcone"] = {"fov_deg2": 3.0}
    plan = dry_run_jobs(repo, workdir, fov, "fov.yaml")
    assert plan["resolved_config"] == 1, f"the edited config was not seen: {dict(plan)}"
    assert plan["simulate_boxes"] == 0, f"a field-of-view edit reruns box simulations: {dict(plan)}"
    steps = copy.deepcopy(tiny)
    steps["simulation"]["n_steps"] = tiny["simulation"]["n_steps"] + 1
    assert dry_run_jobs(repo, workdir, steps, "steps.yaml", *halos)["simulate_boxes"] == 4


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["priors"]["cosmology"][0].update(low=0.6), r"priors.cosmology[0].low"),
        (lambda c: c["design"].update(chunks=3), "design.chunks"),
        (lambda c: c.pop("design"), "missing key design"),
    ],
)
def test_bad_config_fails_before_any_job(repo, tiny, tmp_path, edit, key):
    config = yaml.safe_load(yaml.safe_dump(tiny))
    edit(config)
    proc = snakemake(repo, tmp_path, write_config(tmp_path / "bad.yaml", config))
    assert proc.returncode != 0
    assert key in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(repo, tmp_path):
    proc = snakemake(repo, tmp_path, repo / "config" / "config.yaml", "--lint")
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_slurm_profile_dry_run_asks_a_gpu_for_gpu_stages(repo, tmp_path):
    profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule in ("simulate_boxes", "simulate_lightcone", "train_ldl", "paint_gas", "train_compressor", "train_npe"):
        assert profile["set-resources"][rule]["gpu"] == 1, rule
    rules_text = "".join(p.read_text() for p in (repo / "workflow" / "rules").glob("*.smk"))
    for rule in profile["set-resources"]:
        assert f"rule {rule}:" in rules_text, f"profile names unknown rule {rule}"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(repo / "tests" / "config" / "tiny.yaml"), "--profile", str(repo / "profiles" / "slurm"), "-n"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
