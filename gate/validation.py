"""Readable messages for pydantic validation errors in gate's YAML inputs.

Contracts and training specs are validated the same way, so a bad file gets the
same kind of message wherever it is read: every bad field named with its dotted
path, what was got, and a did-you-mean for near-miss keys.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from gate.errors import InputError

__all__ = ["did_you_mean", "format_validation_errors", "read_bounded"]


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


def read_bounded(path: Path, limit: int, *, what: str) -> bytes:
    """Read at most ``limit`` bytes of an input file, refusing oversize, missing or dangling ones."""
    try:
        if path.is_symlink() and not path.resolve().is_file():
            raise InputError(f"{path}: the {what} is a dangling symlink")
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{path}: the {what} is {size} bytes, more than the {limit}-byte limit")
        with open(path, "rb") as fh:
            return fh.read(limit + 1)[:limit]
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a {what} file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what}: {e.strerror}") from None
