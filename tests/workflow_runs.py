"""Running the real workflow from the end-to-end tests (Snakemake in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml


def snakemake(repo: Path, workdir: Path, configfile: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    """``snakemake --cores 2`` of the checkout's Snakefile in ``workdir`` with ``configfile``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def planned_jobs(log: str) -> Counter:
    """Jobs per rule that a Snakemake log (or dry run) lists."""
    return Counter(re.findall(r"^(?:local)?rule (\w+):$", log, flags=re.MULTILINE))


def dry_run_jobs(repo: Path, workdir: Path, config: dict, name: str, *targets: str) -> Counter:
    """The jobs a dry run of ``targets`` plans with ``config`` (written to ``workdir/name``)."""
    configfile = workdir / name
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(repo, workdir, configfile, "-n", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return planned_jobs(proc.stdout + proc.stderr)
