"""The one logging preamble of the workflow's rule scripts."""

from __future__ import annotations

import logging
import sys

__all__ = ["log_to_file"]


def log_to_file(path: str) -> None:
    """Send the package's log records (INFO and above) and stderr (progress bars, warnings,
    tracebacks) to a rule's log file ``path``."""
    handle = open(path, "a", buffering=1)
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        force=True)
    sys.stderr = handle
