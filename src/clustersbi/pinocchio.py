"""Pinocchio V5 backend: input files, run, and readers of its halo catalogues and light cones.

Pinocchio (Monaco et al. 2002; Munari et al. 2017) is an external MPI executable that we
do not build (it needs MPI, FFTW3, PFFT and GSL). This module writes its inputs from a
design point, runs it through a configurable MPI launcher, and reads its outputs into the
halo table of :mod:`clustersbi.fof`.

File formats follow Pinocchio V5.1's source (``src/pinocchio.h``, ``src/write_halos.c``; its
DOCUMENTATION file is stale). Every layout below is tested on real V5.1 outputs, except the
48-byte light-cone record (noted).

- parameter file: ``Key value`` lines, ``#``/``%`` comments; an unknown key is fatal, so only
  V5 keys are written (:data:`ALLOWED_KEYS`); flag keys are present-means-true.
- input spectrum: two columns, k [h/Mpc] and P(k) [(Mpc/h)^3], no header. ``Sigma8 != 0``
  renormalises it.
- OutputList: one redshift per line, descending.
- catalogue ``pinocchio.{z:.4f}.{RunFlag}.catalog.out`` (``.{i}`` suffix when NumFiles > 1):

  - ASCII: ``#`` header lines, then id, mass [Msun/h], q(3) [Mpc/h], x(3) [Mpc/h], v(3)
    [km/s] and Npart (12 columns), or the same without Npart (11 columns, LIGHT_OUTPUT).
  - binary (int32 Fortran-style markers, byte order detected): header
    ``8 | NTasksPerFile | recsize | 8``, then per task ``4 | ngood | 4`` and, only if
    ngood > 0, ``ngood*rec | records | ngood*rec``. Records (:data:`CATALOGUE_RECORD_DTYPES`):
    uint64 id, mass, x[3] (final), v[3], q[3] (Lagrangian), then int32 npart and int32 pad
    except under LIGHT_OUTPUT; the floats are float32, or float64 with
    DOUBLE_PRECISION_PRODUCTS: 56 bytes (default), 48 (LIGHT_OUTPUT), 96 (double), 88 (both).

- light cone ``pinocchio.{RunFlag}.plc.out``:

  - ASCII: ``#`` header lines, then id, true z, x(3) [Mpc/h], v(3) [km/s], mass, theta, phi
    [deg], v_los [km/s], observed z (13 columns), or id, true z, mass, theta, phi, observed z
    (6 columns, LIGHT_OUTPUT: no positions, velocities or v_los).
  - binary: header ``4 | recsize | 4``, then chunks ``4 | n | 4 | n*rec | records | n*rec``
    to the end of the file, one per task and flush. The collector task writes its chunk even
    when n = 0, data markers included (the 20 bytes ``4 0 4 0 0``); other tasks leave empty
    chunks out. Records (:data:`PLC_RECORD_DTYPES`): uint64 id, then true z, x, y, z, vx, vy,
    vz, mass, theta, phi, v_los, observed z as float32 (56 bytes) or float64 (104 bytes,
    DOUBLE_PRECISION_PRODUCTS); under LIGHT_OUTPUT uint64 id, true z, mass, theta, phi,
    observed z as float32 plus 4 bytes of uninitialised padding (32 bytes, ignored) or as
    float64 (48 bytes; this one is read from the struct definition, no file was checked).

The record size in the header identifies the layout uniquely within each file type.
Double-precision products are not bit-reproducible between runs (FFTW's measured plans move
positions and velocities at ~1e-13 relative); compare them with a tolerance.
"""

from __future__ import annotations

import logging
import operator
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .cosmology import Cosmology
from .fof import make_halo_table

__all__ = [
    "REQUIRED_KEYS",
    "FLAG_KEYS",
    "ALLOWED_KEYS",
    "CATALOGUE_RECORD_DTYPES",
    "PLC_RECORD_DTYPES",
    "RUN_AS_ROOT_VARIABLES",
    "PinocchioError",
    "pinocchio_seed",
    "pinocchio_parameters",
    "write_parameter_file",
    "read_parameter_file",
    "write_power_table",
    "write_output_list",
    "catalogue_path",
    "plc_path",
    "check_executable",
    "DEFAULT_MPI_LAUNCHER",
    "launcher_command",
    "launcher_environment",
    "run_pinocchio",
    "read_catalogue_ascii",
    "read_catalogue_binary",
    "read_catalogue",
    "read_plc_ascii",
    "read_plc_binary",
    "read_plc",
]

logger = logging.getLogger(__name__)

#: Keys a V5 parameter file must contain.
REQUIRED_KEYS = (
    "RunFlag", "OutputList", "BoxSize", "GridSize", "RandomSeed", "Omega0", "OmegaLambda",
    "OmegaBaryon", "Hubble100", "Sigma8", "PrimordialIndex", "DEw0", "DEwa", "TabulatedEoSfile",
    "FileWithInputSpectrum", "InputSpectrum_UnitLength_in_cm", "WDM_PartMass_in_kev",
    "BoundaryLayerFactor", "MaxMem", "MaxMemPerParticle", "PredPeakFactor", "MinHaloMass",
    "AnalyticMassFunction", "StartingzForPLC", "LastzForPLC", "PLCAperture",
)
#: Keys whose presence alone switches an option on (written without a value).
FLAG_KEYS = ("BoxInH100", "CatalogInAscii", "OutputInH100", "PLCProvideConeData")
#: Every key this writer accepts: the required ones, the flags, and V5 options with values.
ALLOWED_KEYS = frozenset(REQUIRED_KEYS + FLAG_KEYS + ("NumFiles", "PLCCenter", "PLCAxis"))

#: Environment variables that let Open MPI's launcher run as root (both of a pair must be
#: "1"): ``OMPI_*`` for Open MPI >= 4.0.2 (mpirun/orterun), ``PRTE_*`` for Open MPI 5 (PRRTE).
#: Other launchers ignore them.
RUN_AS_ROOT_VARIABLES = (
    "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
    "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM",
)


class PinocchioError(RuntimeError):
    """Pinocchio is misconfigured or failed, or its output could not be understood."""


# ---------------------------------------------------------------------------- inputs


def pinocchio_seed(seed: int) -> int:
    """The ``RandomSeed`` that :func:`pinocchio_parameters` writes for a design seed.

    Pinocchio reads RandomSeed as a C ``int`` (``atoi``), so a seed is reduced to
    ``seed % 2**31``. Store this value, not the design seed, as the seed a run used. (GSL's
    ranlxd1, which Pinocchio seeds with it, treats 0 as 1.)

    Raises:
        ValueError: a negative seed; TypeError: a non-integer (e.g. a float).
    """
    value = operator.index(seed)
    if value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return value % 2**31


def pinocchio_parameters(
    cosmo: Cosmology,
    *,
    run_flag: str,
    box_mpc_h: float,
    grid_size: int,
    seed: int,
    power_file: str = "pk_linear_z0.txt",
    output_list_file: str = "outputs",
    min_halo_mass_particles: int = 10,
    analytic_mass_function: int = 9,
    catalogue_in_ascii: bool = False,
    num_files: int = 1,
    max_mem_mb: int = 3000,
    max_mem_per_particle: int = 300,
    boundary_layer_factor: float = 3.0,
    pred_peak_factor: float = 0.8,
    plc: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters of one Pinocchio V5 run, as an ordered ``{key: value}`` mapping.

    Distances are in Mpc/h (``BoxInH100``) and masses in Msun/h (``OutputInH100``). The light
    cone is off unless ``plc`` is given as ``{"z_start", "z_stop", "aperture_deg",
    "centre_mpc_h" (3,), "axis" (3,)}``.

    ``RandomSeed`` is :func:`pinocchio_seed` of ``seed`` (a non-negative integer).

    Returns:
        mapping for :func:`write_parameter_file` (``True`` marks a flag key).
    """
    if grid_size < 2 or box_mpc_h <= 0:
        raise ValueError(f"grid_size ({grid_size}) and box_mpc_h ({box_mpc_h}) must be positive")
    random_seed = pinocchio_seed(seed)
    if not run_flag or any(c.isspace() for c in run_flag):
        raise ValueError(f"run_flag must be a non-empty word, got {run_flag!r}")
    params: dict[str, Any] = {
        "RunFlag": run_flag,
        "OutputList": output_list_file,
        "BoxSize": box_mpc_h,
        "BoxInH100": True,
        "GridSize": int(grid_size),
        "RandomSeed": random_seed,
        "Omega0": cosmo.Omega_m,
        "OmegaLambda": 1.0 - cosmo.Omega_m,
        "OmegaBaryon": cosmo.Omega_b,
        "Hubble100": cosmo.h,
        "Sigma8": cosmo.sigma_8,
        "PrimordialIndex": cosmo.n_s,
        "DEw0": -1.0,
        "DEwa": 0.0,
        "TabulatedEoSfile": "no",
        "FileWithInputSpectrum": power_file,
        # 0: the table's k is in h/Mpc (Pinocchio's internal unit)
        "InputSpectrum_UnitLength_in_cm": 0,
        "WDM_PartMass_in_kev": 0.0,
        "BoundaryLayerFactor": boundary_layer_factor,
        "MaxMem": int(max_mem_mb),
        "MaxMemPerParticle": int(max_mem_per_particle),
        "PredPeakFactor": pred_peak_factor,
        "CatalogInAscii": bool(catalogue_in_ascii),
        "OutputInH100": True,
        "NumFiles": int(num_files),
        "MinHaloMass": int(min_halo_mass_particles),
        "AnalyticMassFunction": int(analytic_mass_function),
    }
    if plc is None:
        params.update({"StartingzForPLC": -1, "LastzForPLC": 0.0, "PLCAperture": 30})
    else:
        if not plc["z_start"] > plc["z_stop"] >= 0:
            raise ValueError(f"plc needs z_start > z_stop >= 0, got {plc['z_start']}, {plc['z_stop']}")
        params.update(
            {
                "StartingzForPLC": plc["z_start"],
                "LastzForPLC": plc["z_stop"],
                "PLCAperture": plc["aperture_deg"],
                "PLCProvideConeData": True,
                "PLCCenter": list(plc.get("centre_mpc_h", (0.0, 0.0, 0.0))),
                "PLCAxis": list(plc.get("axis", (1.0, 1.0, 1.0))),
            }
        )
    return params


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_parameter_file(params: Mapping[str, Any], path: str | Path) -> Path:
    """Write a V5 parameter file (``Key value`` lines; flags as a bare key when ``True``).

    Raises:
        ValueError: a key Pinocchio V5 does not know (which it would treat as fatal), or a
            required key missing.
    """
    unknown = sorted(set(params) - ALLOWED_KEYS)
    if unknown:
        raise ValueError(f"not Pinocchio V5 parameter keys: {unknown}")
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ValueError(f"missing required Pinocchio parameter keys: {missing}")
    lines = ["# Pinocchio V5 parameter file written by clustersbi"]
    for key, value in params.items():
        if key in FLAG_KEYS:
            if value:
                lines.append(key)
            continue
        lines.append(f"{key:<30} {_format_value(value)}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_parameter_file(path: str | Path) -> dict[str, str | bool]:
    """Parse a Pinocchio parameter file: ``{key: value string}``, flags map to ``True``."""
    out: dict[str, str | bool] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].split("%", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        out[parts[0]] = parts[1].strip() if len(parts) > 1 else True
    return out


def write_power_table(k_h_mpc: np.ndarray, pk_mpc3_h3: np.ndarray, path: str | Path) -> Path:
    """Two-column table k [h/Mpc], P(k) [(Mpc/h)^3], no header (Pinocchio's input spectrum)."""
    k = np.asarray(k_h_mpc, dtype=float)
    pk = np.asarray(pk_mpc3_h3, dtype=float)
    if k.ndim != 1 or k.shape != pk.shape:
        raise ValueError(f"k_h_mpc {k.shape} and pk_mpc3_h3 {pk.shape} must be 1D and equal in length")
    if np.any(np.diff(k) <= 0) or np.any(k <= 0) or np.any(pk <= 0):
        raise ValueError("k_h_mpc must be positive and increasing, pk_mpc3_h3 positive")
    path = Path(path)
    np.savetxt(path, np.column_stack([k, pk]), fmt="%.8e")
    return path


def write_output_list(redshifts: Sequence[float], path: str | Path) -> Path:
    """OutputList file: unique redshifts, one per line, descending."""
    z = np.unique(np.asarray(redshifts, dtype=float))[::-1]
    if len(z) == 0 or np.any(z < 0):
        raise ValueError(f"redshifts must be non-empty and >= 0, got {list(redshifts)}")
    path = Path(path)
    path.write_text("".join(f"{v:.6f}\n" for v in z))
    return path


def catalogue_path(directory: str | Path, z: float, run_flag: str, file_index: int | None = None) -> Path:
    """``pinocchio.{z:.4f}.{RunFlag}.catalog.out`` (+ ``.{i}`` when the run wrote NumFiles > 1)."""
    name = f"pinocchio.{z:.4f}.{run_flag}.catalog.out"
    if file_index is not None:
        name += f".{file_index}"
    return Path(directory) / name


def plc_path(directory: str | Path, run_flag: str) -> Path:
    """``pinocchio.{RunFlag}.plc.out``."""
    return Path(directory) / f"pinocchio.{run_flag}.plc.out"




# ---------------------------------------------------------------------------- running

#: Launcher template used when the ``pinocchio`` section gives none (the schema's default).
DEFAULT_MPI_LAUNCHER = "mpirun -np {n_tasks}"


def launcher_command(mpi_launcher: str, n_tasks: int) -> list[str]:
    """The launcher's argv for ``n_tasks`` tasks: ``mpi_launcher.format(n_tasks=...)`` split by
    shell rules (``[]`` for an empty template).

    Raises:
        PinocchioError: naming ``pinocchio.mpi_launcher`` when the template does not format
            (an unknown ``{field}``, unbalanced braces or quotes).
    """
    if not isinstance(mpi_launcher, str):
        raise PinocchioError(
            f"config key `pinocchio.mpi_launcher` must be a string such as {DEFAULT_MPI_LAUNCHER!r} "
            f"(or '' for none), got {mpi_launcher!r}"
        )
    try:
        return shlex.split(mpi_launcher.format(n_tasks=n_tasks))
    except (KeyError, IndexError, ValueError) as exc:
        raise PinocchioError(
            f"config key `pinocchio.mpi_launcher` = {mpi_launcher!r} is not a valid command template "
            f"(the only field is {{n_tasks}}): {exc!r}"
        ) from None


def launcher_environment(mpi_launcher: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the launched run: ``environ`` (default ``os.environ``) and, when an MPI
    launcher is used by root (CI runners, containers), :data:`RUN_AS_ROOT_VARIABLES` set to
    ``"1"`` unless already set, since Open MPI's ``mpirun`` otherwise refuses to start as root.
    """
    env = dict(os.environ if environ is None else environ)
    if mpi_launcher.strip() and getattr(os, "geteuid", lambda: -1)() == 0:
        for name in RUN_AS_ROOT_VARIABLES:
            env.setdefault(name, "1")
    return env


def _resolve_executable(exe: str) -> str:
    """Absolute path of a runnable file (a path, or a program name on PATH); or raise."""
    resolved = shutil.which(exe)
    if resolved is not None:
        return str(Path(resolved).resolve())
    path = Path(exe).expanduser()
    if path.is_dir():
        why = "is a directory"
    elif path.exists():
        why = "is not executable (chmod +x?)"
    elif os.sep in exe or (os.altsep and os.altsep in exe):
        why = "does not exist"
    else:
        why = "is not a program on PATH"
    raise PinocchioError(
        f"config key `pinocchio.executable` = {exe!r} {why}: the Pinocchio backend needs a Pinocchio "
        "V5 executable (built separately with MPI, FFTW3, PFFT and GSL)"
    )


def check_executable(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check the config's ``pinocchio`` section when the DAG is built; starts no process.

    A pure function of the section (plus the file system and PATH): cheap enough to call
    once per workflow invocation, before any job runs.

    Args:
        section: the config's ``pinocchio`` section: ``executable`` (path or program name),
            ``mpi_launcher`` (command template such as ``"mpirun -np {n_tasks}"``, or ``""``
            to run the executable alone; default :data:`DEFAULT_MPI_LAUNCHER`) and ``n_tasks``
            (MPI tasks per run, default 1).

    Returns:
        ``{"executable": absolute path, "mpi_launcher": absolute path of the launcher program
        or "", "launcher_argv": the launcher's argv for n_tasks (list of str)}``.

    Raises:
        PinocchioError: naming the config key (``pinocchio``, ``pinocchio.executable``,
            ``pinocchio.mpi_launcher`` or ``pinocchio.n_tasks``) that is missing, of the wrong
            type, or points at nothing runnable.
    """
    if not isinstance(section, Mapping):
        raise PinocchioError(
            "config section `pinocchio` is missing: simulation.backend pinocchio needs "
            "`pinocchio.executable`, the path to a Pinocchio V5 executable"
        )
    exe = section.get("executable")
    if exe is None or exe == "":
        raise PinocchioError(
            "config key `pinocchio.executable` is not set: the Pinocchio backend needs the path "
            "to a Pinocchio V5 executable (built separately with MPI, FFTW3, PFFT and GSL)"
        )
    if not isinstance(exe, (str, os.PathLike)):
        raise PinocchioError(f"config key `pinocchio.executable` must be a path, got {exe!r}")
    resolved = _resolve_executable(os.fspath(exe))
    n_tasks = section.get("n_tasks", 1)
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise PinocchioError(f"config key `pinocchio.n_tasks` must be an integer >= 1, got {n_tasks!r}")
    launcher = section.get("mpi_launcher", DEFAULT_MPI_LAUNCHER)
    launcher = "" if launcher is None else launcher
    argv = launcher_command(launcher, int(n_tasks))
    launcher_resolved = ""
    if argv:
        launcher_resolved = shutil.which(argv[0]) or ""
        if not launcher_resolved:
            raise PinocchioError(
                f"config key `pinocchio.mpi_launcher` = {launcher!r}: program {argv[0]!r} not found "
                "on PATH (set it to the MPI launcher Pinocchio was built with, or '' to run one task "
                "without MPI)"
            )
    elif n_tasks > 1:
        raise PinocchioError(
            f"config key `pinocchio.n_tasks` = {n_tasks} needs an MPI launcher, but "
            "`pinocchio.mpi_launcher` is empty"
        )
    return {"executable": resolved, "mpi_launcher": launcher_resolved, "launcher_argv": argv}


#: Launcher messages (whitespace-normalised, lower case) and what to tell the user.
_LOG_HINTS = (
    ("attempt to run as root",
     "the MPI launcher refused to run as root: add its override to config key "
     "`pinocchio.mpi_launcher` (Open MPI: 'mpirun --allow-run-as-root -np {n_tasks}')"),
    ("not enough slots",
     "the MPI launcher has fewer slots than config key `pinocchio.n_tasks` asks for: lower it, "
     "or add '--oversubscribe' to `pinocchio.mpi_launcher`"),
    ("could not access or execute an executable",
     "the MPI launcher could not execute config key `pinocchio.executable`"),
)


def _failure_hint(log_text: str) -> str:
    text = " ".join(log_text.split()).lower()
    return "; ".join(hint for needle, hint in _LOG_HINTS if needle in text)


def run_pinocchio(
    param_file: str | Path,
    executable: str,
    log_path: str | Path,
    mpi_launcher: str = DEFAULT_MPI_LAUNCHER,
    n_tasks: int = 1,
    workdir: str | Path | None = None,
    timeout_s: float | None = None,
) -> None:
    """Run Pinocchio on a parameter file; stdout and stderr go to ``log_path``.

    The command is :func:`launcher_command` (``mpi_launcher`` formatted with ``n_tasks``),
    then the executable (resolved here, so a relative path means relative to the caller's
    working directory) and ``param_file``; an empty launcher runs the executable alone. The
    environment is :func:`launcher_environment`, so the default launcher also works as root.
    Outputs land in ``workdir`` (default: the parameter file's directory), where the input
    files named in the parameter file must be.

    Raises:
        PinocchioError: an executable or launcher that cannot run (naming its config key), a
            non-zero exit status or a time-out, quoting the end of the log and, for the
            launcher failures it recognises, which config key to change.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    param_file = Path(param_file).resolve()
    workdir = Path(workdir) if workdir is not None else param_file.parent
    launcher_argv = launcher_command(mpi_launcher, n_tasks)
    command = launcher_argv + [_resolve_executable(str(executable)), str(param_file)]
    logger.info("running %s in %s", " ".join(command), workdir)
    log_path = Path(log_path)
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(
                command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                env=launcher_environment(mpi_launcher),
            )
        except subprocess.TimeoutExpired as exc:
            raise PinocchioError(f"Pinocchio timed out after {timeout_s} s: {' '.join(command)}") from exc
        except OSError as exc:
            key = "pinocchio.mpi_launcher" if launcher_argv else "pinocchio.executable"
            raise PinocchioError(f"could not start {' '.join(command)} (config key `{key}`): {exc}") from exc
    if result.returncode != 0:
        text = log_path.read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-20:])
        hint = _failure_hint(text)
        raise PinocchioError(
            f"Pinocchio exited with status {result.returncode} ({' '.join(command)})"
            + (f": {hint}" if hint else "")
            + f"; log {log_path} ends:\n{tail}"
        )


# ---------------------------------------------------------------------------- readers


def _catalogue_dtype(float_type: str, with_npart: bool) -> np.dtype:
    fields = [("id", "u8"), ("mass", float_type), ("pos", float_type, 3), ("vel", float_type, 3), ("q", float_type, 3)]
    if with_npart:
        fields += [("npart", "i4"), ("pad", "i4")]
    return np.dtype(fields)


#: Binary catalogue record layouts (``catalog_data`` of pinocchio.h) by record size in bytes,
#: in native byte order.
CATALOGUE_RECORD_DTYPES = {
    56: _catalogue_dtype("f4", True),
    48: _catalogue_dtype("f4", False),  # LIGHT_OUTPUT
    96: _catalogue_dtype("f8", True),  # DOUBLE_PRECISION_PRODUCTS
    88: _catalogue_dtype("f8", False),  # both
}
_PLC_FIELDS = ("z_true", "pos", "vel", "mass", "theta", "phi", "v_los", "z_obs")
_PLC_LIGHT_FIELDS = ("z_true", "mass", "theta", "phi", "z_obs")


def _plc_dtype(float_type: str, light: bool) -> np.dtype:
    names = _PLC_LIGHT_FIELDS if light else _PLC_FIELDS
    fields = [("id", "u8")] + [(n, float_type, 3) if n in ("pos", "vel") else (n, float_type) for n in names]
    if light and float_type == "f4":
        fields.append(("pad", "V4"))  # struct tail padding, never written by Pinocchio
    return np.dtype(fields)


#: Binary light-cone record layouts (``plc_write_data`` of pinocchio.h) by record size.
PLC_RECORD_DTYPES = {
    56: _plc_dtype("f4", False),
    104: _plc_dtype("f8", False),  # DOUBLE_PRECISION_PRODUCTS
    32: _plc_dtype("f4", True),  # LIGHT_OUTPUT (28 bytes of data + 4 of padding)
    48: _plc_dtype("f8", True),  # both (from the struct; no such file has been checked)
}
for _size, _dt in list(CATALOGUE_RECORD_DTYPES.items()) + list(PLC_RECORD_DTYPES.items()):
    if _dt.itemsize != _size:  # pragma: no cover - guards the tables above
        raise RuntimeError(f"record dtype of {_size} bytes has itemsize {_dt.itemsize}")

_CATALOGUE_LAYOUTS = "56 (default), 48 (LIGHT_OUTPUT), 96 (DOUBLE_PRECISION_PRODUCTS), 88 (both)"
_PLC_LAYOUTS = "56 (default), 104 (DOUBLE_PRECISION_PRODUCTS), 32 (LIGHT_OUTPUT), 48 (both)"


def _int64_ids(ids: np.ndarray, path: Path) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.uint64)
    if len(ids) and ids.max() >= np.uint64(2**63):
        raise PinocchioError(f"{path}: halo id {int(ids.max())} does not fit the table's int64 id column")
    return ids.astype(np.int64)


def _npart_from_mass(mass: np.ndarray, particle_mass_msun_h: float | None) -> np.ndarray:
    if particle_mass_msun_h:
        return np.rint(np.asarray(mass, dtype=np.float64) / particle_mass_msun_h)
    return np.full(len(mass), -1)


def _catalogue_table(path: Path, ids, mass, pos, vel, q, npart) -> pd.DataFrame:
    q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    return make_halo_table(
        pos, vel, mass, npart, id=_int64_ids(ids, path), qx=q[:, 0], qy=q[:, 1], qz=q[:, 2],
        file_row=np.arange(len(q), dtype=np.int64),
    )


def _read_ascii_rows(path: Path, what: str, n_columns: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Data rows of a Pinocchio ASCII file: (uint64 ids, float64 (n, columns) values), or
    (empty, None) when it holds only ``#`` lines. Ids are parsed as integers (exact)."""
    rows = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return np.zeros(0, dtype=np.uint64), None
    width = len(rows[0].split())
    if width not in n_columns:
        raise PinocchioError(
            f"{path}: {width} columns in an ASCII {what}; known layouts have "
            + " or ".join(map(str, n_columns))
        )
    try:
        values = np.loadtxt(rows, dtype=np.float64, ndmin=2)
        ids = np.loadtxt(rows, dtype=np.uint64, usecols=0, ndmin=1)
    except ValueError as exc:
        raise PinocchioError(f"{path}: unreadable ASCII {what}: {exc}") from None
    return ids, values


def read_catalogue_ascii(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read an ASCII Pinocchio catalogue into the halo table (plus ``id``, ``qx/qy/qz`` [Mpc/h]
    and ``file_row``, the row's 0-based position in the file).

    12 columns (with Npart) or 11 (LIGHT_OUTPUT). Without Npart, ``n_part`` is
    ``round(mass / particle_mass_msun_h)`` when that is given, else -1.
    """
    path = Path(path)
    ids, data = _read_ascii_rows(path, "catalogue", (12, 11))
    if data is None:
        data = np.zeros((0, 12))
    npart = data[:, 11] if data.shape[1] == 12 else _npart_from_mass(data[:, 1], particle_mass_msun_h)
    return _catalogue_table(path, ids, data[:, 1], data[:, 5:8], data[:, 8:11], data[:, 2:5], npart)


class _Reader:
    """Sequential reader of Fortran-style records (int32 byte-count markers)."""

    def __init__(self, buffer: bytes, path: Path, byteorder: str):
        self.buf, self.path, self.pos, self.bo = buffer, path, 0, byteorder

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def ints(self, n: int) -> np.ndarray:
        end = self.pos + 4 * n
        if end > len(self.buf):
            raise PinocchioError(f"{self.path}: truncated at byte {self.pos} ({len(self.buf)} bytes)")
        out = np.frombuffer(self.buf, dtype=self.bo + "i4", count=n, offset=self.pos)
        self.pos = end
        return out

    def peek_int(self) -> int:
        value = int(self.ints(1)[0])
        self.pos -= 4
        return value

    def records(self, dtype: np.dtype, n: int) -> np.ndarray:
        """``n*rec | n records | n*rec`` (also for n = 0: the two markers, both 0)."""
        start = self.pos
        head = int(self.ints(1)[0])
        if head != n * dtype.itemsize:
            raise PinocchioError(f"{self.path}: block marker {head} at byte {start}, expected {n * dtype.itemsize}")
        end = self.pos + head
        if end + 4 > len(self.buf):
            raise PinocchioError(f"{self.path}: truncated record block at byte {self.pos}")
        out = np.frombuffer(self.buf, dtype=dtype.newbyteorder(self.bo), count=n, offset=self.pos)
        self.pos = end
        if int(self.ints(1)[0]) != head:
            raise PinocchioError(f"{self.path}: closing marker at byte {end} differs from opening marker {head}")
        return out

    def count(self) -> int:
        """``4 | n | 4``: a block's record count."""
        marker = self.ints(3)
        if marker[0] != 4 or marker[2] != 4 or marker[1] < 0:
            raise PinocchioError(f"{self.path}: bad record-count block {marker.tolist()} at byte {self.pos - 12}")
        return int(marker[1])


def _byteorder(buffer: bytes, first_marker: int, path: Path) -> str:
    if len(buffer) < 4:
        raise PinocchioError(f"{path}: file too short ({len(buffer)} bytes)")
    for bo in ("<", ">"):
        if int(np.frombuffer(buffer, dtype=bo + "i4", count=1)[0]) == first_marker:
            return bo
    raise PinocchioError(f"{path}: first int32 is not the header marker {first_marker}: not a Pinocchio binary file")


def read_catalogue_binary(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a binary Pinocchio catalogue into the halo table (plus ``id``, ``qx/qy/qz`` and
    ``file_row``, the record's 0-based position in the file, task blocks in file order).

    The record layout comes from the header's recsize (:data:`CATALOGUE_RECORD_DTYPES`).
    LIGHT_OUTPUT records (48 and 88 bytes) carry no particle count: ``n_part`` is then
    ``round(mass / particle_mass_msun_h)`` when that is given, else -1.
    """
    path = Path(path)
    buffer = path.read_bytes()
    reader = _Reader(buffer, path, _byteorder(buffer, 8, path))
    head = reader.ints(4)
    if head[3] != 8 or head[1] < 1:
        raise PinocchioError(f"{path}: header {head.tolist()} is not `8 | NTasksPerFile | recsize | 8`")
    n_tasks, recsize = int(head[1]), int(head[2])
    if recsize not in CATALOGUE_RECORD_DTYPES:
        raise PinocchioError(
            f"{path}: unsupported catalogue record size {recsize} bytes; known layouts: {_CATALOGUE_LAYOUTS}"
        )
    dtype = CATALOGUE_RECORD_DTYPES[recsize]
    blocks = []
    for _ in range(n_tasks):
        n = reader.count()
        if n > 0:  # catalogues, unlike light cones, have no data markers for an empty block
            blocks.append(reader.records(dtype, n))
    if not reader.at_end:
        raise PinocchioError(f"{path}: {len(buffer) - reader.pos} unread bytes after {n_tasks} task blocks")
    rec = np.concatenate(blocks) if blocks else np.zeros(0, dtype=dtype)
    npart = rec["npart"] if "npart" in rec.dtype.names else _npart_from_mass(rec["mass"], particle_mass_msun_h)
    return _catalogue_table(path, rec["id"], rec["mass"], rec["pos"], rec["vel"], rec["q"], npart)


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        first = fh.read(1)
    return first not in (b"#", b" ", b"") and not first.isdigit()


def read_catalogue(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a Pinocchio catalogue, ASCII or binary (told apart by the first byte), any layout."""
    path = Path(path)
    if _is_binary(path):
        return read_catalogue_binary(path, particle_mass_msun_h)
    return read_catalogue_ascii(path, particle_mass_msun_h)


def _plc_table(path: Path, columns: Mapping[str, np.ndarray], particle_mass_msun_h: float | None) -> pd.DataFrame:
    """Halo table of a light cone; fields the layout lacks (LIGHT_OUTPUT: pos, vel, v_los) are NaN."""
    n = len(columns["id"])
    nan, nan3 = np.full(n, np.nan), np.full((n, 3), np.nan)
    mass = np.asarray(columns["mass"], dtype=np.float64)

    def get(name: str, default: np.ndarray) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64) if name in columns else default

    return make_halo_table(
        get("pos", nan3), get("vel", nan3), mass, _npart_from_mass(mass, particle_mass_msun_h),
        id=_int64_ids(columns["id"], path), redshift_true=get("z_true", nan), redshift_obs=get("z_obs", nan),
        theta_deg=get("theta", nan), phi_deg=get("phi", nan), v_los_km_s=get("v_los", nan),
        file_row=np.arange(n, dtype=np.int64),
    )


def read_plc_ascii(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read an ASCII Pinocchio light cone into the halo table plus ``id``, ``redshift_true``,
    ``redshift_obs``, ``theta_deg``, ``phi_deg`` [deg], ``v_los_km_s`` and ``file_row``.

    13 columns, or 6 under LIGHT_OUTPUT (id, true z, mass, theta, phi, observed z: positions,
    velocities and v_los are then NaN). Light cones carry no particle count: ``n_part`` is
    ``round(mass / particle_mass)`` when ``particle_mass_msun_h`` is given, else -1.
    """
    path = Path(path)
    ids, data = _read_ascii_rows(path, "light cone", (13, 6))
    if data is None:
        data = np.zeros((0, 13))
    if data.shape[1] == 13:
        columns = {"z_true": data[:, 1], "pos": data[:, 2:5], "vel": data[:, 5:8], "mass": data[:, 8],
                   "theta": data[:, 9], "phi": data[:, 10], "v_los": data[:, 11], "z_obs": data[:, 12]}
    else:
        columns = dict(zip(_PLC_LIGHT_FIELDS, data[:, 1:].T))
    return _plc_table(path, {"id": ids, **columns}, particle_mass_msun_h)


def read_plc_binary(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a binary Pinocchio light cone (header ``4 | recsize | 4``, then chunks to the end
    of the file); columns as :func:`read_plc_ascii`, layout from the header's recsize
    (:data:`PLC_RECORD_DTYPES`).

    An empty chunk is ``4 | 0 | 4`` followed by its data markers ``0 | 0``, as Pinocchio V5.1
    writes it; a chunk without those markers is accepted too (the next chunk starts with 4).
    """
    path = Path(path)
    buffer = path.read_bytes()
    reader = _Reader(buffer, path, _byteorder(buffer, 4, path))
    head = reader.ints(3)
    if head[2] != 4:
        raise PinocchioError(f"{path}: header {head.tolist()} is not `4 | recsize | 4`")
    recsize = int(head[1])
    if recsize not in PLC_RECORD_DTYPES:
        raise PinocchioError(
            f"{path}: unsupported light-cone record size {recsize} bytes; known layouts: {_PLC_LAYOUTS}"
        )
    dtype = PLC_RECORD_DTYPES[recsize]
    blocks = []
    while not reader.at_end:
        n = reader.count()
        if n > 0 or (not reader.at_end and reader.peek_int() == 0):
            blocks.append(reader.records(dtype, n))
    rec = np.concatenate(blocks) if blocks else np.zeros(0, dtype=dtype)
    columns = {name: rec[name] for name in rec.dtype.names if name != "pad"}
    return _plc_table(path, columns, particle_mass_msun_h)


def read_plc(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a Pinocchio light cone, ASCII or binary (told apart by the first byte), any layout."""
    path = Path(path)
    if _is_binary(path):
        return read_plc_binary(path, particle_mass_msun_h)
    return read_plc_ascii(path, particle_mass_msun_h)
