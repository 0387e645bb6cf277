"""Pinocchio V5 backend: input files, run, and readers of its halo catalogues and light cones.

Pinocchio (Monaco et al. 2002; Munari et al. 2017) is an external MPI executable that we
do not build (it needs MPI, FFTW3, PFFT and GSL). This module writes its inputs from a
design point, runs it through a configurable MPI launcher, and reads its outputs into the
halo table of :mod:`clustersbi.fof`.

File formats follow Pinocchio V5.1's source (its DOCUMENTATION file is stale):

- parameter file: ``Key value`` lines, ``#``/``%`` comments; an unknown key is fatal, so only
  V5 keys are written (:data:`ALLOWED_KEYS`); flag keys are present-means-true.
- input spectrum: two columns, k [h/Mpc] and P(k) [(Mpc/h)^3], no header. ``Sigma8 != 0``
  renormalises it.
- OutputList: one redshift per line, descending.
- catalogue ``pinocchio.{z:.4f}.{RunFlag}.catalog.out`` (``.{i}`` suffix when NumFiles > 1):
  ASCII (8 ``#`` lines; id, mass [Msun/h], q(3), x(3) [Mpc/h], v(3) [km/s], Npart) or binary
  (native endian, int32 Fortran markers): header ``8 | NTasksPerFile | recsize | 8``, then per
  task ``4 | ngood | 4`` and, if ngood > 0, ``ngood*rec | records | ngood*rec``. Records:
  56 bytes (uint64 id, float32 mass, pos[3], vel[3], q[3], int32 npart, int32 pad), 48 bytes
  with LIGHT_OUTPUT (no npart/pad), 96 bytes with double-precision products (float64).
- light cone ``pinocchio.{RunFlag}.plc.out``: ASCII (13 columns: id, true z, x(3), v(3), mass,
  theta, phi, v_los, observed z) or binary: header ``4 | recsize | 4``, then blocks
  ``4 | n | 4``, ``n*rec | records | n*rec`` until the end of the file; 56-byte records
  (uint64 id and twelve float32 in the ASCII column order). Only this layout has been checked
  against real output; others are rejected.
"""

from __future__ import annotations

import logging
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
    "PinocchioError",
    "pinocchio_parameters",
    "write_parameter_file",
    "read_parameter_file",
    "write_power_table",
    "write_output_list",
    "catalogue_path",
    "plc_path",
    "check_executable",
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


class PinocchioError(RuntimeError):
    """Pinocchio failed, or its output could not be understood."""


# ---------------------------------------------------------------------------- inputs


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

    Returns:
        mapping for :func:`write_parameter_file` (``True`` marks a flag key).
    """
    if grid_size < 2 or box_mpc_h <= 0:
        raise ValueError(f"grid_size ({grid_size}) and box_mpc_h ({box_mpc_h}) must be positive")
    if not 0 <= seed < 2**31:
        raise ValueError(f"seed must be in [0, 2^31), got {seed}")
    if not run_flag or any(c.isspace() for c in run_flag):
        raise ValueError(f"run_flag must be a non-empty word, got {run_flag!r}")
    params: dict[str, Any] = {
        "RunFlag": run_flag,
        "OutputList": output_list_file,
        "BoxSize": box_mpc_h,
        "BoxInH100": True,
        "GridSize": int(grid_size),
        "RandomSeed": int(seed),
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


def check_executable(config: Mapping[str, Any]) -> dict[str, str]:
    """Check, at DAG time, that the configured Pinocchio executable and MPI launcher exist.

    Args:
        config: the workflow config (uses ``config["pinocchio"]["executable"]`` and
            ``config["pinocchio"]["mpi_launcher"]``, a command template such as
            ``"mpirun -np {n_tasks}"`` or ``""`` for none).

    Returns:
        ``{"executable": resolved path, "mpi_launcher": resolved launcher program or ""}``.

    Raises:
        FileNotFoundError: naming the config key that points at nothing runnable.
    """
    section = config.get("pinocchio") if isinstance(config, Mapping) else None
    if not isinstance(section, Mapping) or not section.get("executable"):
        raise FileNotFoundError(
            "config key `pinocchio.executable` is not set: the Pinocchio backend needs the path "
            "to a Pinocchio V5 executable (built separately with MPI, FFTW3, PFFT and GSL)"
        )
    exe = str(section["executable"])
    resolved = shutil.which(exe)
    if resolved is None:
        raise FileNotFoundError(
            f"config key `pinocchio.executable` = {exe!r} is not an executable file or a program on PATH"
        )
    launcher = str(section.get("mpi_launcher") or "")
    launcher_resolved = ""
    if launcher.strip():
        program = shlex.split(launcher)[0]
        launcher_resolved = shutil.which(program) or ""
        if not launcher_resolved:
            raise FileNotFoundError(
                f"config key `pinocchio.mpi_launcher` = {launcher!r}: program {program!r} not found on PATH"
            )
    return {"executable": resolved, "mpi_launcher": launcher_resolved}


def run_pinocchio(
    param_file: str | Path,
    executable: str,
    log_path: str | Path,
    mpi_launcher: str = "mpirun -np {n_tasks}",
    n_tasks: int = 1,
    workdir: str | Path | None = None,
    timeout_s: float | None = None,
) -> None:
    """Run Pinocchio on a parameter file; stdout and stderr go to ``log_path``.

    The command is ``mpi_launcher.format(n_tasks=n_tasks)`` split by shell rules, then
    ``executable param_file``; an empty launcher runs the executable alone. Outputs land in
    ``workdir`` (default: the parameter file's directory), where the input files named in the
    parameter file must be.

    Raises:
        PinocchioError: non-zero exit status or time-out, quoting the end of the log.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    param_file = Path(param_file).resolve()
    workdir = Path(workdir) if workdir is not None else param_file.parent
    command = shlex.split(mpi_launcher.format(n_tasks=n_tasks)) + [executable, str(param_file)]
    logger.info("running %s in %s", " ".join(command), workdir)
    log_path = Path(log_path)
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise PinocchioError(f"Pinocchio timed out after {timeout_s} s: {' '.join(command)}") from exc
        except OSError as exc:
            raise PinocchioError(f"could not start {' '.join(command)}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise PinocchioError(
            f"Pinocchio exited with status {result.returncode} ({' '.join(command)}); log {log_path} ends:\n{tail}"
        )


# ---------------------------------------------------------------------------- readers


def _catalogue_dtype(float_type: str, with_npart: bool) -> np.dtype:
    fields = [("id", "u8"), ("mass", float_type), ("pos", float_type, 3), ("vel", float_type, 3), ("q", float_type, 3)]
    if with_npart:
        fields += [("npart", "i4"), ("pad", "i4")]
    return np.dtype(fields)


#: Binary catalogue record layouts by record size in bytes (native byte order).
CATALOGUE_RECORD_DTYPES = {
    56: _catalogue_dtype("f4", True),
    48: _catalogue_dtype("f4", False),  # LIGHT_OUTPUT
    96: _catalogue_dtype("f8", True),  # DOUBLE_PRECISION_PRODUCTS
}
#: Binary light-cone record layouts by record size in bytes.
PLC_RECORD_DTYPES = {
    56: np.dtype(
        [("id", "u8"), ("z_true", "f4"), ("pos", "f4", 3), ("vel", "f4", 3), ("mass", "f4"),
         ("theta", "f4"), ("phi", "f4"), ("v_los", "f4"), ("z_obs", "f4")]
    ),
}
for _size, _dt in list(CATALOGUE_RECORD_DTYPES.items()) + list(PLC_RECORD_DTYPES.items()):
    if _dt.itemsize != _size:  # pragma: no cover - guards the tables above
        raise RuntimeError(f"record dtype of {_size} bytes has itemsize {_dt.itemsize}")


def _catalogue_table(ids, mass, pos, vel, q, npart) -> pd.DataFrame:
    q = np.asarray(q, dtype=np.float64)
    return make_halo_table(pos, vel, mass, npart, id=np.asarray(ids, dtype=np.int64), qx=q[:, 0], qy=q[:, 1], qz=q[:, 2])


def read_catalogue_ascii(path: str | Path) -> pd.DataFrame:
    """Read an ASCII Pinocchio catalogue into the halo table (plus ``id``, ``qx/qy/qz`` [Mpc/h])."""
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        data = np.zeros((0, 12))
    if data.shape[1] != 12:
        raise PinocchioError(f"{path}: expected 12 columns in an ASCII catalogue, found {data.shape[1]}")
    return _catalogue_table(data[:, 0], data[:, 1], data[:, 5:8], data[:, 8:11], data[:, 2:5], data[:, 11])


class _Reader:
    """Sequential reader of Fortran-style records (int32 byte-count markers)."""

    def __init__(self, buffer: bytes, path: Path, byteorder: str):
        self.buf, self.path, self.pos, self.bo = buffer, path, 0, byteorder

    def ints(self, n: int) -> np.ndarray:
        end = self.pos + 4 * n
        if end > len(self.buf):
            raise PinocchioError(f"{self.path}: truncated at byte {self.pos}")
        out = np.frombuffer(self.buf, dtype=self.bo + "i4", count=n, offset=self.pos)
        self.pos = end
        return out

    def records(self, dtype: np.dtype, n: int) -> np.ndarray:
        head = int(self.ints(1)[0])
        if head != n * dtype.itemsize:
            raise PinocchioError(f"{self.path}: block marker {head} at byte {self.pos - 4}, expected {n * dtype.itemsize}")
        end = self.pos + head
        if end + 4 > len(self.buf):
            raise PinocchioError(f"{self.path}: truncated record block at byte {self.pos}")
        out = np.frombuffer(self.buf, dtype=dtype.newbyteorder(self.bo), count=n, offset=self.pos)
        self.pos = end
        if int(self.ints(1)[0]) != head:
            raise PinocchioError(f"{self.path}: closing marker differs from opening marker {head}")
        return out

    def counted_block(self, dtype: np.dtype) -> np.ndarray:
        """``4 | n | 4`` then, if n > 0, ``n*rec | records | n*rec``."""
        marker = self.ints(3)
        if marker[0] != 4 or marker[2] != 4 or marker[1] < 0:
            raise PinocchioError(f"{self.path}: bad record-count block {marker.tolist()} at byte {self.pos - 12}")
        n = int(marker[1])
        return self.records(dtype, n) if n > 0 else np.zeros(0, dtype=dtype)


def _byteorder(buffer: bytes, first_marker: int, path: Path) -> str:
    if len(buffer) < 4:
        raise PinocchioError(f"{path}: file too short ({len(buffer)} bytes)")
    for bo in ("<", ">"):
        if int(np.frombuffer(buffer, dtype=bo + "i4", count=1)[0]) == first_marker:
            return bo
    raise PinocchioError(f"{path}: first int32 is not the header marker {first_marker}: not a Pinocchio binary file")


def read_catalogue_binary(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a binary Pinocchio catalogue into the halo table (plus ``id``, ``qx/qy/qz``).

    The record layout is detected from the header's recsize (56, 48 or 96 bytes, see
    :data:`CATALOGUE_RECORD_DTYPES`). LIGHT_OUTPUT records (48 bytes) carry no particle count:
    ``n_part`` is then ``round(mass / particle_mass_msun_h)`` when that is given, else -1.
    """
    path = Path(path)
    buffer = path.read_bytes()
    reader = _Reader(buffer, path, _byteorder(buffer, 8, path))
    head = reader.ints(4)
    if head[3] != 8:
        raise PinocchioError(f"{path}: header {head.tolist()} is not `8 | NTasksPerFile | recsize | 8`")
    n_tasks, recsize = int(head[1]), int(head[2])
    if recsize not in CATALOGUE_RECORD_DTYPES:
        raise PinocchioError(
            f"{path}: unsupported catalogue record size {recsize} bytes; known layouts: "
            "56 (default), 48 (LIGHT_OUTPUT), 96 (DOUBLE_PRECISION_PRODUCTS)"
        )
    dtype = CATALOGUE_RECORD_DTYPES[recsize]
    blocks = [reader.counted_block(dtype) for _ in range(n_tasks)]
    if reader.pos != len(buffer):
        raise PinocchioError(f"{path}: {len(buffer) - reader.pos} unread bytes after {n_tasks} task blocks")
    rec = np.concatenate(blocks) if blocks else np.zeros(0, dtype=dtype)
    if "npart" in rec.dtype.names:
        npart = rec["npart"]
    elif particle_mass_msun_h:
        npart = np.rint(rec["mass"] / particle_mass_msun_h)
    else:
        npart = np.full(len(rec), -1)
    return _catalogue_table(rec["id"], rec["mass"], rec["pos"], rec["vel"], rec["q"], npart)


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        first = fh.read(1)
    return first not in (b"#", b" ", b"") and not first.isdigit()


def read_catalogue(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a Pinocchio catalogue, ASCII or binary (told apart by the first byte)."""
    path = Path(path)
    if _is_binary(path):
        return read_catalogue_binary(path, particle_mass_msun_h)
    return read_catalogue_ascii(path)


def _plc_table(ids, z_true, pos, vel, mass, theta, phi, v_los, z_obs, particle_mass_msun_h) -> pd.DataFrame:
    mass = np.asarray(mass, dtype=np.float64)
    npart = np.rint(mass / particle_mass_msun_h) if particle_mass_msun_h else np.full(len(mass), -1)
    return make_halo_table(
        pos, vel, mass, npart,
        id=np.asarray(ids, dtype=np.int64), redshift_true=np.asarray(z_true, dtype=np.float64),
        redshift_obs=np.asarray(z_obs, dtype=np.float64), theta_deg=np.asarray(theta, dtype=np.float64),
        phi_deg=np.asarray(phi, dtype=np.float64), v_los_km_s=np.asarray(v_los, dtype=np.float64),
    )


def read_plc_ascii(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read an ASCII Pinocchio light cone into the halo table plus ``id``, ``redshift_true``,
    ``redshift_obs``, ``theta_deg``, ``phi_deg``, ``v_los_km_s``.

    Light-cone files carry no particle count: ``n_part`` is ``round(mass / particle_mass)``
    when ``particle_mass_msun_h`` is given, else -1.
    """
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        data = np.zeros((0, 13))
    if data.shape[1] != 13:
        raise PinocchioError(f"{path}: expected 13 columns in an ASCII light cone, found {data.shape[1]}")
    d = data.T
    return _plc_table(d[0], d[1], data[:, 2:5], data[:, 5:8], d[8], d[9], d[10], d[11], d[12], particle_mass_msun_h)


def read_plc_binary(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a binary Pinocchio light cone (header ``4 | recsize | 4``, then counted blocks to EOF)."""
    path = Path(path)
    buffer = path.read_bytes()
    reader = _Reader(buffer, path, _byteorder(buffer, 4, path))
    head = reader.ints(3)
    if head[2] != 4:
        raise PinocchioError(f"{path}: header {head.tolist()} is not `4 | recsize | 4`")
    recsize = int(head[1])
    if recsize not in PLC_RECORD_DTYPES:
        raise PinocchioError(
            f"{path}: unsupported light-cone record size {recsize} bytes; known layout: 56 "
            "(uint64 id + 12 float32)"
        )
    dtype = PLC_RECORD_DTYPES[recsize]
    blocks = []
    while reader.pos < len(buffer):
        blocks.append(reader.counted_block(dtype))
    rec = np.concatenate(blocks) if blocks else np.zeros(0, dtype=dtype)
    return _plc_table(
        rec["id"], rec["z_true"], rec["pos"], rec["vel"], rec["mass"], rec["theta"], rec["phi"],
        rec["v_los"], rec["z_obs"], particle_mass_msun_h,
    )


def read_plc(path: str | Path, particle_mass_msun_h: float | None = None) -> pd.DataFrame:
    """Read a Pinocchio light cone, ASCII or binary (told apart by the first byte)."""
    path = Path(path)
    if _is_binary(path):
        return read_plc_binary(path, particle_mass_msun_h)
    return read_plc_ascii(path, particle_mass_msun_h)
