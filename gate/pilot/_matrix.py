"""The pilot's decision matrix: frozen models, and how every number traces back to a file.

Each :class:`Cell` holds a measured value, its unit, and where it came from: one
or more :class:`Source` (a file relative to the pilot directory plus an RFC 6901
JSON pointer into it) and a ``derive`` operation that turns the pointed-at data
into the value (``value`` takes it as is, ``len`` counts a list, ...).
:func:`trace` re-reads the sources and recomputes the value, so anyone can
check a matrix against the run records and gate reports it was built from.
A cell may carry its measurement's own uncertainty, itself a traced cell (the
spread between repeats, the eval's paired bound), and a criterion that does not
apply to a toolkit says why instead of holding a value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gate.errors import InputError

__all__ = [
    "MATRIX_KIND",
    "MATRIX_VERSION",
    "Cell",
    "Criterion",
    "PilotMatrix",
    "RunInfo",
    "ScoreTerm",
    "Source",
    "ToolkitResult",
    "ToolkitScore",
    "resolve_pointer",
    "trace",
]

#: 1.1 added uncertainties, not-applicable cells, unweighted criteria, gate verdicts and the headline.
MATRIX_VERSION: Literal["1.1"] = "1.1"
MATRIX_KIND: Literal["gate.pilot-matrix"] = "gate.pilot-matrix"
#: Bound on a source file read while tracing (run records and reports are small; adapters are not JSON).
_MAX_JSON_BYTES = 64 << 20
_MAX_WEIGHTS_BYTES = 4 << 30

Derive = Literal[
    "value",
    "len",
    "lines",
    "count_non_null",
    "config_keys",
    "fraction_where",
    "fraction_equal",
    "all_equal",
    "max_abs_diff",
    "max_abs_weight_diff",
]
Value = bool | int | float | None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Model):
    """A file of the pilot (relative path) and the JSON pointer of the datum inside it."""

    file: str = Field(description="path relative to the pilot directory")
    pointer: str = Field(default="", description="RFC 6901 JSON pointer; '' is the whole document")
    digest: str | None = Field(default=None, description="e.g. the environment's lock sha256")


class Cell(_Model):
    """One measured value of one toolkit, with its unit and provenance."""

    value: Value
    unit: str
    derive: Derive = "value"
    sources: tuple[Source, ...] = ()
    #: For ``fraction_where``: item key -> required value; for ``fraction_equal``: {"equals": value}.
    where: dict[str, Any] | None = None
    #: Why the value could not be measured (then ``value`` is None).
    missing: str | None = None
    #: Why the criterion does not apply to this toolkit (then ``value`` is None; not a missing cell).
    not_applicable: str | None = None
    #: Half-width of the value's own uncertainty, in the value's unit, traced like any cell.
    uncertainty: Cell | None = None
    #: What the uncertainty is (e.g. "spread between 2 repeats"); set on an uncertainty cell.
    basis: str | None = None


class Criterion(_Model):
    """A row of the matrix."""

    key: str
    group: str
    label: str
    unit: str
    #: Which way is better when scoring; None: shown, never scored.
    better: Literal["higher", "lower"] | None
    description: str


class RunInfo(_Model):
    """One training run of the pilot (an ordinary RUN_DIR)."""

    id: str
    toolkit: str
    repeat: int = Field(ge=1)
    dir: str
    status: Literal["succeeded", "failed", "missing"]
    failure: str | None = None


class ToolkitResult(_Model):
    """A column of the matrix: one toolkit's runs and measured cells."""

    toolkit: str
    version: str | None
    runs: tuple[RunInfo, ...]
    cells: dict[str, Cell]
    #: Gate name -> ``passed``, ``failed`` or ``not run`` (from the gate reports of repeat 1).
    verdicts: dict[str, str] = Field(default_factory=dict)


class ScoreTerm(_Model):
    """One criterion's part of a toolkit's weighted score."""

    weight: float
    normalised: float | None
    contribution: float
    #: Points this contribution could move if the value lay anywhere within its own uncertainty.
    uncertainty: float = 0.0


class ToolkitScore(_Model):
    """A toolkit's weighted score (0-100) and its per-criterion contributions."""

    toolkit: str
    score: float
    terms: dict[str, ScoreTerm]
    #: Worst-case points the score could move within its values' uncertainties (the sum over terms).
    uncertainty: float = 0.0


class PilotMatrix(_Model):
    """``pilot.json``: the whole decision matrix (``version`` 1.1; 1.0 files still load)."""

    kind: Literal["gate.pilot-matrix"] = MATRIX_KIND
    version: Literal["1.0", "1.1"] = MATRIX_VERSION
    gate_version: str
    created_at: str
    spec: dict[str, str]
    contract: dict[str, str]
    settings: dict[str, Any]
    criteria: tuple[Criterion, ...]
    toolkits: tuple[ToolkitResult, ...]
    weights: dict[str, float]
    weights_source: str
    default_weights: dict[str, float]
    familiarity: dict[str, float] = Field(default_factory=dict)
    normalisation: str
    scores: tuple[ToolkitScore, ...]
    phases: dict[str, float] = Field(default_factory=dict, description="wall seconds per pilot phase")
    missing: tuple[str, ...] = ()
    #: Scored criteria that carry no weight in this pilot -> why (equal for all, within uncertainty, ...).
    unweighted: dict[str, str] = Field(default_factory=dict)
    #: What the matrix says first: gates nobody passes, who passes every gate, whether the scores separate.
    headline: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every cell of every toolkit has a value."""
        return not self.missing

    def cell(self, toolkit: str, key: str) -> Cell | None:
        """The cell of ``toolkit`` for criterion ``key``."""
        for t in self.toolkits:
            if t.toolkit == toolkit:
                return t.cells.get(key)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``pilot.json`` holds), with ``complete`` spelled out."""
        return {**self.model_dump(mode="json"), "complete": self.complete}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "pilot.json") -> PilotMatrix:
        """Validate a parsed ``pilot.json``; :class:`InputError` naming the problem otherwise."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: not a JSON object")
        body = {k: v for k, v in data.items() if k != "complete"}
        try:
            return cls.model_validate(body)
        except ValueError as e:
            raise InputError(f"{where}: not a gate pilot matrix: {e}") from None


# --- tracing ----------------------------------------------------------------------------------------


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """The datum at RFC 6901 ``pointer`` in ``doc`` (KeyError/IndexError when absent)."""
    if pointer == "":
        return doc
    if not pointer.startswith("/"):
        raise KeyError(f"not a JSON pointer: {pointer!r}")
    node = doc
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            raise KeyError(f"{pointer}: {part!r} is below a scalar")
    return node


def pointer_of(*parts: str | int) -> str:
    """The JSON pointer of a path of keys/indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _safe_path(root: Path, rel: str) -> Path:
    path = root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise InputError(f"source {rel!r} is not a path inside the pilot directory")
    # Never follow a symlink out of the pilot directory.
    if not path.resolve().is_relative_to(root.resolve()):
        raise InputError(f"source {rel!r} leads out of the pilot directory")
    return path


def load_document(root: Path, rel: str) -> Any:
    """A JSON (or YAML) source file of the pilot, bounded in size."""
    path = _safe_path(root, rel)
    size = path.stat().st_size
    if size > _MAX_JSON_BYTES:
        raise InputError(f"{path}: {size} bytes, too large for a source document")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def _leaf_count(node: Any) -> int:
    if isinstance(node, dict):
        return sum(_leaf_count(v) for v in node.values()) if node else 1
    return 1


def config_keys(text: str) -> int:
    """Settings in a native config: the leaf keys of its YAML/JSON mapping (lists count as one)."""
    import yaml

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return 0
    return _leaf_count(data)


def max_abs_weight_diff(a: Path, b: Path) -> float:
    """Largest absolute element difference between two safetensors files with the same tensors."""
    from gate.safetensors_io import read_header, read_tensor

    for p in (a, b):
        if p.stat().st_size > _MAX_WEIGHTS_BYTES:
            raise InputError(f"{p}: too large to compare")
    ha, hb = read_header(a), read_header(b)
    if set(ha.tensors) != set(hb.tensors):
        return math.inf
    worst = 0.0
    for name in sorted(ha.tensors):
        ta, tb = ha.tensors[name], hb.tensors[name]
        if tuple(ta.shape) != tuple(tb.shape):
            return math.inf
        x, y = read_tensor(a, ha, name), read_tensor(b, hb, name)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{x!r} is not a number")
    return float(x)


def derive_value(derive: Derive, data: Sequence[Any], where: Mapping[str, Any] | None) -> Value:
    """Compute a cell's value from its sources' data (``data[i]`` is source ``i``'s datum)."""
    first = data[0] if data else None
    if derive == "value":
        if isinstance(first, bool | int | float) or first is None:
            return first
        raise ValueError(f"{first!r} is not a scalar")
    if derive == "len":
        return len(first) if isinstance(first, list | dict) else 0
    if derive == "lines":
        return sum(1 for line in str(first).splitlines() if line.strip())
    if derive == "count_non_null":
        if not isinstance(first, dict):
            raise ValueError("count_non_null needs an object")
        return sum(1 for v in first.values() if v is not None and not isinstance(v, list | dict))
    if derive == "config_keys":
        return config_keys(str(first))
    if derive == "fraction_where":
        items = [i for i in first if isinstance(i, dict)] if isinstance(first, list) else []
        if not items:
            return None
        hits = sum(1 for i in items if all(i.get(k) == v for k, v in (where or {}).items()))
        return hits / len(items)
    if derive == "fraction_equal":
        want = (where or {}).get("equals")
        return sum(1 for d in data if d == want) / len(data) if data else None
    if derive == "all_equal":
        return all(d == first for d in data)
    if derive == "max_abs_diff":
        return max(abs(_number(d) - _number(first)) for d in data[1:]) if len(data) > 1 else None
    raise ValueError(f"derive {derive!r} needs files, not data")


def trace(cell: Cell, root: Path) -> Value:
    """Recompute ``cell``'s value from its source files under the pilot directory ``root``."""
    root = Path(root)
    if cell.derive == "max_abs_weight_diff":
        paths = [_safe_path(root, s.file) for s in cell.sources]
        return max(max_abs_weight_diff(paths[0], p) for p in paths[1:])
    data: list[Any] = []
    for s in cell.sources:
        if cell.derive == "fraction_equal":
            # A run that left no record counts as a failed attempt.
            try:
                data.append(resolve_pointer(load_document(root, s.file), s.pointer))
            except (OSError, KeyError, IndexError, ValueError):
                data.append(None)
        else:
            data.append(resolve_pointer(load_document(root, s.file), s.pointer))
    return derive_value(cell.derive, data, cell.where)


def same_value(a: Value, b: Value) -> bool:
    """Equality for traced values (floats within a relative 1e-9)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
