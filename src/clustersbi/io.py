"""Atomic output files and small HDF5 helpers.

Every stage writes its outputs through :func:`atomic_path`, so a job killed mid-write
leaves no file that a rerun would trust (DESIGN.md, principle 5).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["atomic_path", "write_json", "h5_write_attrs", "h5_read_attrs"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    The temporary file lives in the same directory (same filesystem), so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
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


def h5_read_attrs(obj) -> dict[str, Any]:
    """Inverse of :func:`h5_write_attrs` (JSON strings are decoded when they parse)."""
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
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
