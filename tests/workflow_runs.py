"""Running the real workflow from the end-to-end tests (Snakemake in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml


def snakemake_command(repo: Path, workdir: Path, configfile: Path, *args: str) -> list[str]:
    """argv of ``snakemake --cores 2`` of the checkout's Snakefile in ``workdir`` with ``configfile``."""
    return [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def snakemake(repo: Path, workdir: Path, configfile: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    """Run :func:`snakemake_command` to the end."""
    return subprocess.run(snakemake_command(repo, workdir, configfile, *args), capture_output=True, text=True,
                          timeout=timeout)


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


def _comparable(value):
    """An HDF5 value as something ``==`` compares exactly: bytes of numeric arrays, lists of
    strings (variable-length strings come back as object arrays)."""
    import numpy as np

    array = np.asarray(value)
    if array.dtype.kind in "OSUV" and array.dtype.names is None:
        return (str(array.dtype.kind), array.shape, array.tolist())
    return (str(array.dtype), array.shape, array.tobytes())


def h5_content(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file (dtype, shape, exact values), by object
    path: what a file holds, without the metadata HDF5 itself writes (object timestamps,
    free-space layout)."""
    import h5py

    with h5py.File(path, "r") as f:
        out = {"/": {k: _comparable(v) for k, v in f.attrs.items()}}

        def visit(name, obj):
            out[name] = {k: _comparable(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name]["<data>"] = _comparable(obj[()])

        f.visititems(visit)
    return out


def output_files(results: Path) -> dict[str, Path]:
    """The files under a results folder by relative path, except timing records
    (``results/benchmarks``: wall times differ between runs by nature)."""
    return {str(p.relative_to(results)): p for p in sorted(results.rglob("*"))
            if p.is_file() and p.relative_to(results).parts[0] != "benchmarks"}
