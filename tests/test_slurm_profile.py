"""The SLURM profile asks for what each stage needs.

A dry run of the real workflow with ``--profile profiles/slurm`` resolves every job's resources
as Snakemake would submit them; the sbatch arguments are then rendered with the SLURM executor
plugin's own functions (``get_submit_command``, ``set_gres_string``), so a GPU stage that would
be queued without a GPU, or a lightcone chain split over several jobs, fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from workflow_runs import snakemake

pytestmark = pytest.mark.slow

#: the GPU stages of the default (LDL -> X-ray -> XOD) chain
GPU_RULES = ("simulate_lightcone", "train_ldl", "paint_gas", "xray_maps", "train_compressor", "train_npe")
#: one group job per lightcone chunk, in this order of execution
LIGHTCONE_CHAIN = ("simulate_lightcone", "paint_gas", "xray_maps", "detect_sources")
#: the same with simulation.lightcone.forward: fused (one device job makes the maps)
FUSED_CHAIN = ("fused_xray_maps", "detect_sources")


class _Resources(dict):
    """Job resources with the attribute access the plugin uses (``job.resources.runtime``)."""

    __getattr__ = dict.get


def _parse_value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def _dry_run_jobs(log: str) -> list[dict]:
    """(rule, chunk, resources, group) of every job a dry run lists.

    Members of a group job are listed indented under a ``Group job NAME`` line.
    """
    jobs, group, job = [], None, None
    for line in log.splitlines():
        if match := re.search(r"Group job (\w+)", line):
            group = match.group(1)
        elif match := re.match(r"^(\s*)(?:local)?rule (\w+):$", line):
            in_group = bool(match.group(1))
            group = group if in_group else None
            job = {"rule": match.group(2), "chunk": None, "resources": _Resources(), "group": group}
            jobs.append(job)
        elif job is not None and (match := re.search(r"wildcards: .*chunk=(\d+)", line)):
            job["chunk"] = match.group(1)
        elif job is not None and (match := re.search(r"resources: (.*)", line)):
            for item in match.group(1).split(", "):
                key, _, value = item.partition("=")
                job["resources"][key] = _parse_value(value)
    return jobs


def _profile_dry_run(repo, workdir, forward: str) -> list[dict]:
    """The jobs of a dry run of the tiny XOD config with ``simulation.lightcone.forward``."""
    shutil.copytree(repo / "profiles", workdir / "profiles")
    config = yaml.safe_load((repo / "tests" / "config" / "tiny_xod.yaml").read_text())
    config["simulation"]["lightcone"]["forward"] = forward
    configfile = workdir / "tiny_xod.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(repo, workdir, configfile, "-n", "--profile", str(workdir / "profiles" / "slurm"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _dry_run_jobs(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def profile_dry_run(repo, tmp_path_factory) -> list[dict]:
    return _profile_dry_run(repo, tmp_path_factory.mktemp("slurm"), "staged")


@pytest.fixture(scope="module")
def fused_profile_dry_run(repo, tmp_path_factory) -> list[dict]:
    return _profile_dry_run(repo, tmp_path_factory.mktemp("slurm_fused"), "fused")


def _sbatch(job: dict) -> str:
    """The sbatch command line the plugin builds for a job with these resources."""
    stand_in = SimpleNamespace(resources=job["resources"], threads=1, name=job["rule"])
    params = {"run_uuid": "test", "slurm_logfile": "slurm.log", "comment_str": job["rule"],
              "account": f"-A {job['resources']['slurm_account']}",
              "partition": f"-p {job['resources']['slurm_partition']}", "workdir": "."}
    return get_submit_command(stand_in, params) + set_gres_string(stand_in)


def test_every_gpu_stage_asks_for_a_gpu(profile_dry_run):
    rules = {job["rule"] for job in profile_dry_run}
    missing = set(GPU_RULES) - rules
    assert not missing, f"the tiny XOD dry run plans no {sorted(missing)}: update GPU_RULES"
    for job in profile_dry_run:
        call = _sbatch(job)
        if job["rule"] in GPU_RULES:
            assert "--gpus=1" in call, f"{job['rule']} is submitted without a GPU: {call}"
            assert "<gpu-partition>" in call, f"{job['rule']} is not sent to the GPU partition: {call}"
        elif job["rule"] not in LIGHTCONE_CHAIN:
            assert "--gpus" not in call, f"{job['rule']} holds a GPU it does not use: {call}"
        assert f"-t {job['resources']['runtime']}" in call and f"--mem {job['resources']['mem_mb']}" in call


def test_a_lightcone_chunk_runs_as_one_group_job(profile_dry_run):
    chain = [job for job in profile_dry_run if job["rule"] in LIGHTCONE_CHAIN]
    assert chain, "the tiny XOD dry run plans no lightcone chain"
    by_chunk: dict[str, set] = {}
    for job in chain:
        assert job["group"] == "lightcone_chunk", f"{job['rule']} (chunk {job['chunk']}) runs outside the group job"
        by_chunk.setdefault(job["chunk"], set()).add(job["rule"])
    assert len(by_chunk) >= 2 and all(rules == set(LIGHTCONE_CHAIN) for rules in by_chunk.values()), by_chunk


def test_the_fused_maps_job_asks_for_a_gpu_and_runs_in_the_chunk_group(fused_profile_dry_run):
    rules = {job["rule"] for job in fused_profile_dry_run}
    assert not rules & {"simulate_lightcone", "paint_gas", "xray_maps"}, f"forward: fused plans the staged chain: {rules}"
    chain = [job for job in fused_profile_dry_run if job["rule"] in FUSED_CHAIN]
    by_chunk: dict[str, set] = {}
    for job in chain:
        assert job["group"] == "lightcone_chunk", f"{job['rule']} (chunk {job['chunk']}) runs outside the group job"
        by_chunk.setdefault(job["chunk"], set()).add(job["rule"])
        if job["rule"] == "fused_xray_maps":
            call = _sbatch(job)
            assert "--gpus=1" in call and "<gpu-partition>" in call, f"fused_xray_maps is submitted without a GPU: {call}"
    assert len(by_chunk) >= 2 and all(rules == set(FUSED_CHAIN) for rules in by_chunk.values()), by_chunk


def test_profile_names_only_real_rules(repo):
    profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
    # rules defined under a config switch (xray.smk's maps rule) are indented
    defined = set(re.findall(r"^\s*rule (\w+):", "".join(p.read_text() for p in (repo / "workflow" / "rules").glob("*.smk")),
                             flags=re.MULTILINE))
    named = set(profile["set-resources"]) | set(profile["set-threads"]) | {g.split("=")[0] for g in profile["groups"]}
    assert named <= defined, f"profiles/slurm names rules that do not exist: {sorted(named - defined)}"
