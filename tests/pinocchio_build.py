"""The real Pinocchio for the tests: built once, by ``make pinocchio``, from the vendored sources.

``../shared/vendor`` (beside the repository, as in CI) holds the Pinocchio V5.1 and PFFT source
tarballs. :func:`build` unpacks them and runs the repository's own ``make pinocchio`` (that is,
``tools/build_pinocchio.sh``, the helper users run), so the tests exercise the helper too. The
executable lands in a cache folder keyed by the tarballs and the helper's content, reused while
they are unchanged:

- ``$CLUSTERSBI_PINOCCHIO_CACHE`` when set, else ``.cache/pinocchio-<key>`` in the repository
  (git-ignored);
- a lock file serialises builders, so ``make test`` can start a build in the background
  (``python tests/pinocchio_build.py``) while the test session's fixture waits for it.

Run as root with apt-get (CI, containers), the Debian build dependencies are installed when
missing (``--install-debian-packages``). Without the vendored sources, or when a dependency is
missing and cannot be installed, :func:`build` returns the reason to skip; a build that fails
for any other reason raises.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO.parent / "shared" / "vendor"
HELPER = REPO / "tools" / "build_pinocchio.sh"
#: exit status of the helper when a build dependency is missing
MISSING_DEPENDENCY = 3


@dataclass(frozen=True)
class Build:
    """Where the executable is (``executable``), or why there is none (``skip_reason``)."""

    executable: Path | None
    skip_reason: str = ""
    log: str = ""


def _tarball(pattern: str) -> Path | None:
    found = sorted(VENDOR.glob(pattern))
    return found[-1] if found else None


def cache_prefix() -> Path:
    """The install prefix of the test build (see the module docstring)."""
    if os.environ.get("CLUSTERSBI_PINOCCHIO_CACHE"):
        return Path(os.environ["CLUSTERSBI_PINOCCHIO_CACHE"])
    key = hashlib.sha256(HELPER.read_bytes())
    for pattern in ("pinocchio-*-src.tar.gz", "pfft-*-src.tar.gz"):
        tar = _tarball(pattern)
        key.update(tar.name.encode() if tar else b"-")
    return REPO / ".cache" / f"pinocchio-{key.hexdigest()[:12]}"


def _unpack(tar: Path, into: Path) -> Path:
    """Unpack a source tarball; its one top-level folder."""
    with tarfile.open(tar) as archive:
        archive.extractall(into, filter="tar")
    (top,) = [p for p in into.iterdir() if p.is_dir()]
    return top


def build(prefix: Path | None = None) -> Build:
    """Build Pinocchio into ``prefix`` (default :func:`cache_prefix`) unless it is there."""
    prefix = Path(prefix or cache_prefix())
    executable = prefix / "bin" / "pinocchio.x"
    pinocchio_tar, pfft_tar = _tarball("pinocchio-*-src.tar.gz"), _tarball("pfft-*-src.tar.gz")
    if executable.exists() and os.access(executable, os.X_OK):
        return Build(executable)
    if pinocchio_tar is None or pfft_tar is None:
        return Build(None, f"Pinocchio and PFFT sources not found in {VENDOR.parent.name}/{VENDOR.name} "
                           "beside the repository")
    if shutil.which("make") is None:
        return Build(None, "make not found: cannot run `make pinocchio`")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another builder (the background one) finishes first
        if executable.exists():
            return Build(executable)
        with tempfile.TemporaryDirectory(prefix="pinocchio_src_") as scratch:
            scratch = Path(scratch)
            (scratch / "pinocchio").mkdir()
            (scratch / "pfft").mkdir()
            src = _unpack(pinocchio_tar, scratch / "pinocchio")
            pfft = _unpack(pfft_tar, scratch / "pfft")
            flags = "--install-debian-packages" if os.geteuid() == 0 and shutil.which("apt-get") else ""
            proc = subprocess.run(
                ["make", "-C", str(REPO), "pinocchio", f"PINOCCHIO_SRC={src}", f"PFFT_SRC={pfft}",
                 f"PINOCCHIO_PREFIX={prefix}", f"PINOCCHIO_FLAGS={flags}"],
                capture_output=True, text=True,
            )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        # make reports the recipe's exit status as "Error N"
        if f"] Error {MISSING_DEPENDENCY}" in proc.stderr:
            reason = [line for line in proc.stderr.splitlines() if line.startswith("build_pinocchio: ")][0]
            return Build(None, f"cannot build Pinocchio here: {reason.removeprefix('build_pinocchio: ')}", log)
        raise RuntimeError(f"make pinocchio failed (status {proc.returncode}):\n{log[-4000:]}")
    if not executable.exists():
        raise RuntimeError(f"make pinocchio succeeded but {executable} is missing:\n{log[-4000:]}")
    return Build(executable, log=log)


if __name__ == "__main__":
    # the background build of `make test`: report, never fail the caller (the fixture reports)
    try:
        result = build()
    except RuntimeError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
    print(result.executable or f"skipped: {result.skip_reason}")
