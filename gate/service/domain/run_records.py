"""A release's training run record (run.json), read bounded for the API and the UI pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar.exceptions import NotFoundException

from gate.errors import InputError
from gate.validation import read_bounded

__all__ = ["read_run_record"]

_MAX_RUN_JSON = 8 << 20


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory (bounded; a symlinked run.json is refused)."""
    path = run_dir / "run.json"
    if path.is_symlink() or not path.is_file():
        raise NotFoundException(f"{run_dir} has no run.json")
    raw = read_bounded(path, _MAX_RUN_JSON, what="run record")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InputError(f"{path} is not JSON: {e}") from e
    return data if isinstance(data, dict) else {"value": data}
