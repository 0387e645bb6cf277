"""Peak memory and epoch time of the compressor's training in memory vs lazily (``compress.max_memory_mb``).

Prints a table. A training set of ``--rows`` one-channel ``--mesh``^3 float32 fields (lognormal
overdensity-like values whose mean depends on two parameters) is written once with
:func:`clustersbi.compress.write_training_set`; then each mode trains a small 3D CNN on it
for ``--epochs`` epochs in its own process (so that each process's peak RSS is its own):
``memory`` (the whole set loaded, ``max_memory_mb`` null) and ``lazy`` (bound ``--bound-mb``;
rows read from the file per batch, transforms fitted by streaming). Columns: the stored size
of x, the bound, RSS after the imports, peak RSS (``ru_maxrss``), the peak above the imports,
the median epoch time, the whole call (transform fit included), the last validation loss. A
third row trains the same network in memory on 96 rows: what the network itself takes (weights,
activations, torch's buffers), which no bound on the data covers.

Usage: python benchmarks/lazy_training.py [--rows 2048] [--mesh 32] [--bound-mb 64] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_set(path: Path, rows: int, mesh: int) -> None:
    import numpy as np

    from clustersbi.compress import TrainingSet, write_training_set

    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, 1.0, size=(rows, 2))
    x = np.empty((rows, mesh, mesh, mesh), dtype=np.float32)
    for i in range(rows):  # delta = exp(g) - 1 with a parameter-dependent width and mean
        g = rng.normal(0.3 * theta[i, 0], 0.5 + 0.5 * theta[i, 1], size=(mesh,) * 3)
        x[i] = np.expm1(g)
    split = np.where(np.arange(rows) % 8 == 0, "val", "train")
    write_training_set(path, TrainingSet(theta, x, split, ["a", "b"]))


def run_mode(path: Path, mode: str, bound_mb: float, epochs: int, batch: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from clustersbi.compress import CompressorConfig, train_compressor
    from clustersbi.compress.data import open_training_set

    base = _rss_mib()
    cfg = CompressorConfig(
        architecture="cnn3d", inputs={"x": {"extractor": "cnn3d", "transform": "none", "standardize": "global", "channel_axis": None}},
        n_channels_first=2, n_blocks=3, head_hidden=[32, 32], batch_size=batch, max_epochs=epochs, patience=epochs, seed=0,
    )
    with open_training_set(path, None if mode == "memory" else bound_mb) as ts, tempfile.TemporaryDirectory() as out:
        res = train_compressor(ts, cfg, out, device="cpu", resume=False)
        kind = type(ts).__name__
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "reader": kind, "base_mib": base, "peak_mib": peak,
            "epoch_s": statistics.median(h["seconds"] for h in res.history), "total_s": res.seconds,
            "val_loss": res.history[-1]["val_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--mesh", type=int, default=32)
    ap.add_argument("--bound-mb", type=float, default=64.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--child", nargs=2, metavar=("FILE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, mode = Path(args.child[0]), args.child[1]
        if mode == "make":
            make_set(path, args.rows, args.mesh)
        else:
            print(json.dumps(run_mode(path, mode, args.bound_mb, args.epochs, args.batch)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fields.h5"
        small = Path(tmp) / "small.h5"  # the network's own memory: the same training on 96 rows
        for file, n in ((path, args.rows), (small, 96)):
            subprocess.run([sys.executable, __file__, "--rows", str(n), "--mesh", str(args.mesh), "--child", str(file), "make"],
                           check=True)
        stored = args.rows * args.mesh**3 * 4 / 2**20
        rows = []
        for file, mode in ((path, "memory"), (path, "lazy"), (small, "memory")):
            cmd = [sys.executable, __file__, "--bound-mb", str(args.bound_mb), "--epochs", str(args.epochs),
                   "--batch", str(args.batch), "--child", str(file), mode]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            rows.append({**json.loads(out.strip().splitlines()[-1]), "rows": 96 if file == small else args.rows})
    print(f"{args.rows} rows of {args.mesh}^3 float32 (x stored: {stored:.0f} MiB), 3D CNN, batch {args.batch}, "
          f"{args.epochs} epochs, 1 thread")
    print(f"{'rows':>5} {'mode':<7} {'reader':<16} {'bound MiB':>9} {'RSS base':>9} {'peak RSS':>9} {'peak-base':>9} "
          f"{'s/epoch':>8} {'total s':>8} {'val loss':>9}")
    for r in rows:
        bound = "-" if r["mode"] == "memory" else f"{args.bound_mb:g}"
        print(f"{r['rows']:>5} {r['mode']:<7} {r['reader']:<16} {bound:>9} {r['base_mib']:>9.0f} {r['peak_mib']:>9.0f} "
              f"{r['peak_mib'] - r['base_mib']:>9.0f} {r['epoch_s']:>8.2f} {r['total_s']:>8.2f} {r['val_loss']:>9.5f}")


if __name__ == "__main__":
    main()
