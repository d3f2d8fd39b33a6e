"""The one bounded reader of gate's inputs, and readable messages for pydantic errors.

Everything gate reads that it did not write goes through here: :func:`open_regular`
(no-follow open of a regular file that never blocks on a FIFO), :func:`read_bounded`
(the same, size-limited), :func:`loads_json` and :func:`loads_yaml` (bounded depth,
integer digits and node counts; finite numbers only; duplicate keys and YAML
aliases refused). Contracts and training specs are validated the same way, so a
bad file gets the same kind of message wherever it is read: every bad field
named with its dotted path, what was got, and a did-you-mean for near-miss keys.
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import json
import math
import os
import stat
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Union

import yaml
from pydantic import BaseModel, ValidationError

from gate.errors import InputError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "LimitError",
    "contained_path",
    "did_you_mean",
    "file_kind",
    "format_validation_errors",
    "loads_json",
    "loads_yaml",
    "open_regular",
    "read_bounded",
]

#: Nesting depth of a JSON/YAML document gate accepts (real configs nest < 10 deep).
MAX_DEPTH = 64
#: Digits of an integer literal (a 64-bit integer has 20; more is an attack or a bug).
MAX_INT_DIGITS = 40
#: Nodes of a YAML document (a contract has a few hundred).
MAX_YAML_NODES = 200_000


def did_you_mean(key: str, known: Sequence[str]) -> str | None:
    """The known key ``key`` most likely meant, if any."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return close[0]
    # Abbreviations and spelled-out names (``rank`` for ``r``, ``target`` for ``target_modules``).
    prefixed = [k for k in known if key.startswith(k) or k.startswith(key)]
    return prefixed[0] if len(prefixed) == 1 else None


def format_validation_errors(where: str | object, exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per error: ``WHERE: dotted.field: message (got VALUE)``."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        field = ".".join(str(p) for p in loc) or "(top level)"
        kind = error["type"]
        got = error.get("input")
        if kind == "extra_forbidden":
            model = _model_at(root, loc)
            known = list(model.model_fields) if model else []
            close = did_you_mean(str(loc[-1]), known)
            if close:
                tip = f"; did you mean '{close}'?"
            else:
                tip = f"; known keys: {', '.join(known)}" if known else ""
            msg = f"unknown key{tip}"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "literal_error":
            expected = str(error.get("ctx", {}).get("expected", ""))
            options = expected.replace(" or ", ", ").replace("'", "")
            msg = f"must be one of {options} (got {_short(got)})"
        else:
            msg = error["msg"].removeprefix("Value error, ")
            shown = got is not None and not isinstance(got, dict)
            if shown and kind not in ("value_error", "assertion_error"):
                msg += f" (got {_short(got)})"
        lines.append(f"{where}: {field}: {msg}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class whose field the last element of ``loc`` names."""
    current: Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(non_none) == 1:
            return non_none[0]
    return tp


# --- files -----------------------------------------------------------------------------------------


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for messages)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def open_regular(path: Path, *, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, never following a final symlink.

    ``O_NONBLOCK`` keeps the open of a FIFO (or one swapped in after a stat) from blocking;
    the file type is then checked on the open descriptor (no check-then-open race) and
    blocking mode restored for the regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: the {what} is a symlink; gate does not follow symlinks") from None
        if e.errno == errno.ENOENT:
            raise InputError(f"{path}: no such {what} file") from None
        if e.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing): never a file
            raise InputError(f"{path}: the {what} is not a regular file (a socket)") from None
        raise InputError(f"{path}: cannot open the {what}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: the {what} is not a regular file ({file_kind(mode)})")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, *, what: str) -> bytes:
    """Read at most ``limit`` bytes of a regular input file; oversize, special or linked files are refused."""
    with open_regular(path, what=what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: the {what} is {size} bytes, more than the {limit}-byte limit")
        try:
            data = fh.read(limit + 1)
        except OSError as e:
            raise InputError(f"{path}: cannot read the {what}: {e.strerror}") from None
    if len(data) > limit:  # grew after the stat
        raise InputError(f"{path}: the {what} is more than the {limit}-byte limit")
    return data


def contained_path(root: Path, rel: object, *, where: str, extra_roots: Sequence[Path] = ()) -> Path:
    """``rel`` (a path an input file names) under ``root``: relative, inside, through no symlink.

    ``extra_roots`` are further directories the path may lead into (gate's own shipped files).
    """
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise InputError(f"{where}: must be a non-empty relative path (got {rel!r:.80})")
    if os.path.isabs(rel) or rel.startswith("~"):
        raise InputError(
            f"{where}: {rel!r:.200} is an absolute path; name files relative to the file naming them",
        )
    # Compare absolute paths: a contract named relatively (contracts/x.yaml) is the same file.
    root = Path(os.path.abspath(root))
    roots = (root, *(Path(os.path.abspath(r)) for r in extra_roots))
    candidate = Path(os.path.normpath(root / rel))
    inside = next((r for r in roots if candidate == r or r in candidate.parents), None)
    if inside is None:
        raise InputError(
            f"{where}: {rel!r:.200} leads outside {root}", hint="keep referenced files beside it"
        )
    probe = inside
    for part in candidate.relative_to(inside).parts:
        probe = probe / part
        if probe.is_symlink():
            raise InputError(
                f"{where}: {rel!r:.200} goes through the symlink {probe}; gate does not follow symlinks",
                hint="reference real files and directories",
            )
    return candidate


# --- JSON ------------------------------------------------------------------------------------------


class LimitError(ValueError):
    """A document is syntactically valid but outside gate's bounds (depth, digits, NaN, duplicates)."""


def _refuse_constant(name: str) -> Any:
    raise LimitError(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LimitError(f"{text[:40]} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise LimitError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise LimitError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def _check_depth(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    raise LimitError(f"nested deeper than {limit} levels")
                stack.append((child, depth + 1))


def loads_json(data: bytes | str, *, max_depth: int | None = MAX_DEPTH, strict_ints: bool = True) -> Any:
    """Parse JSON strictly: finite numbers, bounded integers and depth, no duplicate keys.

    ``max_depth=None`` and ``strict_ints=False`` skip the depth walk and the per-integer
    hook for documents whose shape the caller validates itself (a safetensors header with
    100,000 tensors); the decoder's recursion limit and Python's 4300-digit limit still bound them.
    Raises :class:`LimitError` (a ``ValueError``) for a bound and ``ValueError`` for bad syntax.
    """
    try:
        value = json.loads(
            data,
            object_pairs_hook=_unique_pairs,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int if strict_ints else None,
        )
    except RecursionError:  # the C decoder's own bound, far above ours
        raise LimitError(
            f"nested deeper than {max_depth} levels" if max_depth else "nested too deeply"
        ) from None
    if max_depth is not None and isinstance(value, dict | list):
        _check_depth(value, max_depth)
    return value


# --- YAML ------------------------------------------------------------------------------------------

_YamlBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _BoundedLoader(_YamlBase):  # type: ignore[misc]
    """A safe loader whose scalars are bounded: finite floats, integers of bounded digits."""


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    digits = sum(c.isalnum() for c in str(node.value))
    if digits > MAX_INT_DIGITS:
        raise LimitError(f"line {node.start_mark.line + 1}: an integer of {digits} digits")
    return int(yaml.SafeLoader.construct_yaml_int(loader, node))


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    if len(str(node.value)) > 64:
        raise LimitError(f"line {node.start_mark.line + 1}: a number of {len(str(node.value))} characters")
    value = float(yaml.SafeLoader.construct_yaml_float(loader, node))
    if not math.isfinite(value):
        raise LimitError(f"line {node.start_mark.line + 1}: {node.value} is not a finite number")
    return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _check_nodes(root: yaml.Node, max_depth: int) -> None:
    """Refuse aliases (a node reached twice), deep nesting, too many nodes and duplicate keys."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            raise LimitError(
                f"line {node.start_mark.line + 1}: YAML aliases (*name) are not allowed; write the value out"
            )
        seen.add(id(node))
        if len(seen) > MAX_YAML_NODES:
            raise LimitError(f"more than {MAX_YAML_NODES} YAML nodes")
        if depth > max_depth:
            raise LimitError(f"line {node.start_mark.line + 1}: nested deeper than {max_depth} levels")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, key.value) in keys:
                        raise LimitError(f"line {key.start_mark.line + 1}: duplicate key {key.value[:80]!r}")
                    keys.add((key.tag, key.value))
                stack.extend(((key, depth + 1), (value, depth + 1)))


def loads_yaml(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document with the safe constructors, bounded (see :func:`_check_nodes`).

    Raises :class:`LimitError` for a bound and ``yaml.YAMLError`` for bad syntax or tags.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, max_depth)
        return loader.construct_document(node)
    except RecursionError:
        raise LimitError(f"nested deeper than {max_depth} levels") from None
    finally:
        loader.dispose()
