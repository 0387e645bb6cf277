"""``make pinocchio`` (tools/build_pinocchio.sh): the build users run, and the one the tests use.

The session fixture ``pinocchio_executable`` builds Pinocchio V5.1 from ``../shared/vendor``
with it. Its executable must reproduce the shared test data's set 1 byte for byte (the README
there: runB_binary, 2 MPI tasks, 1 OpenMP thread, built with the four scale-dependent options
off); a build with them on would read other input tables and fail or differ.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess

#: set-1 run whose binary catalogues (z = 0.5 and 0.1) the build must reproduce
SET1_RUN = "runB_binary"


def test_build_reproduces_shared_set1_byte_for_byte(pinocchio_executable, testdata, tmp_path):
    src = testdata / "pinocchio"
    for name in (f"params_{SET1_RUN}", "outputs_runAB", "pk_camb_z0.txt"):
        shutil.copy(src / name, tmp_path / name)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run(["mpirun", "-np", "2", str(pinocchio_executable), f"params_{SET1_RUN}"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for z in ("0.5000", "0.1000"):
        name = f"pinocchio.{z}.{SET1_RUN}.catalog.out"
        assert filecmp.cmp(tmp_path / name, src / name, shallow=False), f"{name} differs from the shared test data"


def test_make_pinocchio_asks_for_the_sources(repo):
    proc = subprocess.run(["make", "-s", "-C", str(repo), "pinocchio"], capture_output=True, text=True)
    assert proc.returncode != 0 and "PINOCCHIO_SRC=" in proc.stderr, proc.stderr


def test_helper_stops_on_a_makefile_it_does_not_know(repo, pinocchio_executable, tmp_path):
    """A Pinocchio whose Makefile lacks the options to switch off is not half-edited and built."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Makefile").write_text("OPTIONS += -DTWO_LPT\n")
    prefix = pinocchio_executable.parent.parent  # holds PFFT already: nothing is rebuilt
    proc = subprocess.run(
        [str(repo / "tools" / "build_pinocchio.sh"), "--pinocchio-src", str(tmp_path), "--prefix", str(tmp_path / "out"),
         "--pfft-prefix", str(prefix)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "option SCALE_DEPENDENT is not switched on" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "bin" / "pinocchio.x").exists()


def test_helper_reports_a_missing_dependency_with_status_3(repo, tmp_path):
    """Without a dependency (here: no MPI compiler on PATH) the helper says which, with status 3,
    which the fixture turns into a skip reason rather than a failure."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "make", "sed", "grep", "mkdir", "dirname", "cat", "ls", "tail", "env"):
        if shutil.which(name):
            (bin_dir / name).symlink_to(shutil.which(name))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Makefile").write_text("")
    proc = subprocess.run(
        ["bash", str(repo / "tools" / "build_pinocchio.sh"), "--pinocchio-src", str(tmp_path), "--prefix",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 3 and "mpicc not found" in proc.stderr, proc.stderr
