"""Time Snakemake's dry run (DAG construction) for large designs.

Prints a table: design size, chunk size, chunks, jobs, dry-run wall time, peak RSS of the
Snakemake process. Target: under 20 s for the 48,000 simulations of the paper presets.

    python benchmarks/dag_scaling.py [--sizes 4096 32768 48000]
    python benchmarks/dag_scaling.py --configfile config/xod.yaml --sizes 48000 --chunk-sizes 4 16 64
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "config" / "dag_48000.yaml"


def dry_run(n_simulations: int, workdir: Path, base: Path = CONFIG,
            chunk_size: int | None = None) -> tuple[float, int, int, float]:
    config = yaml.safe_load(base.read_text())
    config["design"]["n_simulations"] = n_simulations
    if chunk_size is not None:
        config["design"]["chunk_size"] = chunk_size
    configfile = workdir / f"dag_{n_simulations}_{config['design']['chunk_size']}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(configfile), "-n", "--quiet", "rules", "--cores", "1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, flags=re.MULTILINE)
    chunks = -(-n_simulations // config["design"]["chunk_size"])
    return seconds, chunks, int(total.group(1)) if total else -1, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768, 48000])
    parser.add_argument("--configfile", type=Path, default=CONFIG,
                        help="the preset to plan (default: the scaling analysis of benchmarks/config)")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[None],
                        help="design.chunk_size values to try (default: the preset's)")
    args = parser.parse_args()
    print(f"{'n_simulations':>13} {'chunk size':>10} {'chunks':>7} {'jobs':>7} {'dry run [s]':>12} "
          f"{'peak RSS [MB]':>14}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for chunk_size in args.chunk_sizes:
                seconds, chunks, jobs, peak = dry_run(n, Path(tmp), args.configfile.resolve(), chunk_size)
                size = chunk_size or yaml.safe_load(args.configfile.read_text())["design"]["chunk_size"]
                print(f"{n:>13} {size:>10} {chunks:>7} {jobs:>7} {seconds:>12.1f} {peak:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
