"""Atomic output files, small HDF5 helpers and the chunk-file layout.

Every stage writes its outputs through :func:`atomic_path`, so a job killed mid-write
leaves no file that a rerun would trust (DESIGN.md, principle 5).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["atomic_path", "write_json", "h5_write_attrs", "h5_read_attrs", "sorted_groups", "ChunkFile"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    The temporary file, ``.{name}.tmp``, lives in the same directory (same filesystem), so
    the final ``os.replace`` is atomic. On any exception the temporary file is removed.

    Its name is a function of the target's, not a random one (``mkstemp``): writers that
    embed the file name in the file (``torch.save`` names its zip records after it) then
    write the same bytes on every run, and the temporary a killed job leaves behind is
    reclaimed by the next attempt rather than left beside the outputs. This needs one writer
    per target at a time, which Snakemake guarantees for a job's outputs.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)  # a killed attempt's
    tmp.touch(mode=0o600)
    try:
        yield tmp
        # mkstemp creates the file readable by its owner only; give it the permissions an
        # ordinary file would get (umask), as collaborators on a cluster expect
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in metrics and provenance records.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def h5_write_attrs(obj, attrs: Mapping[str, Any]) -> None:
    """Store a flat mapping as HDF5 attributes; nested values are stored as JSON strings."""
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) and not _is_numeric_sequence(value):
            obj.attrs[key] = json.dumps(value, default=_json_default)
        elif value is None:
            obj.attrs[key] = "null"
        else:
            obj.attrs[key] = value


def h5_read_attrs(obj, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Inverse of :func:`h5_write_attrs` (JSON strings are decoded when they parse).

    ``keys``: read only these attributes (each read costs ~0.1 ms; KeyError if one is missing).
    """
    out: dict[str, Any] = {}
    items = obj.attrs.items() if keys is None else ((k, obj.attrs[k]) for k in keys)
    for key, value in items:
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def _is_numeric_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)


def sorted_groups(group, prefix: str) -> list[str]:
    """Names of the members of an open HDF5 group that start with ``prefix``, sorted."""
    return sorted(k for k in group if k.startswith(prefix))


class ChunkFile:
    """A per-chunk HDF5 file: ``sim_{index:06d}[/lc_{l:02d}[/slab_{s:02d}]]`` groups with attributes.

    Every per-chunk output (particles, gas, maps, catalogues, XODs, halos, summaries) uses this
    layout; a simulation's group carries :meth:`clustersbi.design.SimulationRecord.to_attrs`.
    Create with :meth:`create` (atomic: the file appears only when the block succeeds), read
    with :meth:`open`.
    """

    def __init__(self, h5file) -> None:
        self.h5 = h5file

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | os.PathLike) -> Iterator["ChunkFile"]:
        """Write a new chunk file at ``path`` atomically (the HDF5 file closes before the rename)."""
        import h5py

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                yield cls(f)

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike) -> Iterator["ChunkFile"]:
        """Read an existing chunk file."""
        import h5py

        with h5py.File(path, "r") as f:
            yield cls(f)

    @property
    def attrs(self) -> dict[str, Any]:
        return h5_read_attrs(self.h5)

    def write_attrs(self, attrs: Mapping[str, Any]) -> None:
        h5_write_attrs(self.h5, attrs)

    def add_simulation(self, record, **extra: Any):
        """New group of a :class:`~clustersbi.design.SimulationRecord`, with its attributes and ``extra``."""
        group = self.h5.create_group(record.group_name)
        h5_write_attrs(group, {**record.to_attrs(), **extra})
        return group

    def simulation(self, record, carried: Mapping[str, Any] | None = None, **extra: Any):
        """The group of ``record``, created on first use with its attributes, ``extra`` and the
        entries of ``carried`` (attributes read from an upstream file) that the record does not
        define itself."""
        if record.group_name in self.h5:
            return self.h5[record.group_name]
        own = record.to_attrs()
        kept = {k: v for k, v in (carried or {}).items() if k not in own}
        return self.add_simulation(record, **kept, **extra)

    @staticmethod
    def lightcone(sim_group, lightcone: int):
        """The lightcone group of ``sim_group``, created on first use."""
        name = f"lc_{lightcone:02d}"
        return sim_group[name] if name in sim_group else ChunkFile.add_lightcone(sim_group, lightcone)

    @staticmethod
    def add_lightcone(sim_group, lightcone: int, **attrs: Any):
        group = sim_group.create_group(f"lc_{lightcone:02d}")
        h5_write_attrs(group, {"lightcone": int(lightcone), **attrs})
        return group

    @staticmethod
    def add_slab(lc_group, slab: int, **attrs: Any):
        group = lc_group.create_group(f"slab_{slab:02d}")
        h5_write_attrs(group, attrs)
        return group

    def simulations(self, keys: Sequence[str] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
        """(attributes, group) of every simulation, by index; ``keys``: only these attributes."""
        for name in sorted_groups(self.h5, "sim_"):
            group = self.h5[name]
            yield h5_read_attrs(group, keys), group

    @staticmethod
    def lightcones(sim_group) -> Iterator[tuple[int, Any]]:
        """(lightcone number, group) of a simulation group, in order."""
        for name in sorted_groups(sim_group, "lc_"):
            yield int(name[3:]), sim_group[name]

    @staticmethod
    def slabs(lc_group) -> list:
        """The slab groups of a lightcone group, in order; ValueError if there are none."""
        slabs = [lc_group[n] for n in sorted_groups(lc_group, "slab_")]
        if not slabs:
            raise ValueError(f"{lc_group.name} holds no slab_ groups")
        return slabs
