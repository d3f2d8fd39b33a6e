"""A release's training run record (run.json), read bounded for the API and the UI pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar.exceptions import NotFoundException

from gate.errors import InputError

__all__ = ["read_run_record"]

_MAX_RUN_JSON = 8 << 20


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory (bounded; a symlinked run.json is refused)."""
    path = run_dir / "run.json"
    if path.is_symlink() or not path.is_file():
        raise NotFoundException(f"{run_dir} has no run.json")
    with path.open("rb") as fh:
        raw = fh.read(_MAX_RUN_JSON + 1)
    if len(raw) > _MAX_RUN_JSON:
        raise InputError(f"{path} is larger than {_MAX_RUN_JSON} bytes")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InputError(f"{path} is not JSON: {e}") from e
    return data if isinstance(data, dict) else {"value": data}
