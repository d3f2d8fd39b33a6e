"""Evidence bound to the artifact: what the release checks and rewrites as it assembles a bundle.

One place for the rules that tie a bundle's records to its bytes:

- :func:`load_run_record`: ``run.json`` validated against the run schema
  (``contracts/run.schema.json`` is generated from the same model), and its
  adapter file digests matched to the files released;
- :class:`PathScrubber`: no signed file carries an absolute machine path;
  known roots become labels, any other local absolute path ``<local>/NAME``;
- :func:`normalise_adapter`: a local base path in the adapter's
  ``adapter_config.json`` (PEFT writes the path it loaded the base from)
  becomes the contract's base name, recorded as a fix;
- :func:`bundle_problems`: what a verifier recomputes from a bundle's own copies
  (the contract digest over the bundled references, run.json against the files).

Example::

    record = load_run_record(run_dir / "run.json")
    match_adapter_files(record, {"adapter_config.json": "<sha256>", ...})
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.bundle import CONTRACT, CONTRACT_FILES, RUN_RECORD, list_files, read_json
from gate.contract_files import contract_digest
from gate.digests import file_sha256
from gate.errors import InputError

__all__ = [
    "PathScrubber",
    "bundle_problems",
    "load_run_record",
    "match_adapter_files",
    "normalise_adapter",
]

_MAX_RUN_RECORD_BYTES = 8 << 20
#: Adapter files scrubbed as text; weights and anything else are left byte for byte.
_TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja", ".yaml", ".yml")
_MAX_SCRUB_BYTES = 32 << 20


# --- run.json ----------------------------------------------------------------------------------------


def load_run_record(path: Path) -> Any:
    """Read ``run.json`` and validate it against the run schema; return the :class:`RunRecord`.

    One clear InputError for a record that is malformed, not of a finished run,
    or that lists no adapter files.
    """
    from pydantic import ValidationError

    from gate.training import RunRecord

    if path.is_symlink() or not path.is_file():
        raise InputError(f"{path.parent} has no run.json", hint="pass a run directory made by gate train")
    data = read_json(path, max_bytes=_MAX_RUN_RECORD_BYTES)
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{path} does not follow contracts/run.schema.json: {where}: {first['msg']} "
            f"({e.error_count()} problem(s))",
            hint="release a run directory written by gate train",
        ) from None
    if record.status != "succeeded":
        raise InputError(f"{path}: the run's status is {record.status!r}, not 'succeeded'")
    if record.adapter is None or not record.adapter.files:
        raise InputError(f"{path} records no adapter files", hint="the run did not finish exporting")
    return record


def match_adapter_files(record: Any, files: Mapping[str, str]) -> None:
    """Raise InputError unless the run record's adapter files are exactly ``files`` (name -> sha256)."""
    recorded = {name: f.sha256 for name, f in record.adapter.files.items()}
    for name in sorted(set(recorded) | set(files)):
        if name not in files:
            raise InputError(f"run.json lists adapter file {name}, which the adapter directory lacks")
        if name not in recorded:
            raise InputError(f"adapter file {name} is not in run.json (the run did not produce it)")
        if recorded[name] != files[name]:
            raise InputError(
                f"adapter file {name} has sha256 {files[name]}, but run.json records {recorded[name]}",
                hint="the adapter changed after training; release the run as gate train wrote it",
            )


# --- absolute paths ----------------------------------------------------------------------------------

# An absolute path not glued to a word, URL or another path (``http://h:1/v1`` stays as it is).
_ABSOLUTE = re.compile(r"(?<![\w.:/~<>%-])/[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+=,-]*)*")


@dataclass(frozen=True)
class PathScrubber:
    """Replaces absolute machine paths in text and JSON with labels (longest root first)."""

    roots: tuple[tuple[str, str], ...]

    @classmethod
    def for_release(cls, labelled: Mapping[Path | None, str]) -> PathScrubber:
        """Scrubber for a release: the given roots, then GATE_HOME, the home and temp directories."""
        from gate.envs import gate_home

        pairs: dict[str, str] = {}
        extra: dict[Path | None, str] = {
            gate_home(): "<gate-home>",
            Path.home(): "~",
            Path(tempfile.gettempdir()): "<tmp>",
        }
        for path, label in {**labelled, **{k: v for k, v in extra.items() if k not in labelled}}.items():
            if path is None:
                continue
            for form in {str(path), str(Path(path).resolve())}:
                if form not in ("/", ""):
                    pairs.setdefault(form.rstrip("/"), label)
        ordered = sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)
        return cls(tuple(ordered))

    def text(self, value: str, *, known_only: bool = False) -> str:
        """``value`` with every absolute machine path replaced (``known_only``: only the known roots)."""
        if "/" not in value:
            return value
        for root, label in self.roots:
            if root in value:
                value = re.sub(re.escape(root) + r"(?![\w.@+-])", label, value)
        return value if known_only else _ABSOLUTE.sub(_local, value)

    def json(self, value: Any) -> Any:
        """A copy of a JSON value with :meth:`text` applied to every string (keys included)."""
        return self._json(value, False)

    def _json(self, value: Any, known_only: bool) -> Any:
        if isinstance(value, str):
            return self.text(value, known_only=known_only)
        if isinstance(value, list):
            return [self._json(v, known_only) for v in value]
        if isinstance(value, dict):
            return {
                self.text(str(k), known_only=known_only): self._json(v, known_only) for k, v in value.items()
            }
        return value

    def file(self, path: Path, *, known_only: bool = False) -> bool:
        """Scrub a bundle file in place (JSON re-serialised, other text replaced); True if it changed."""
        if not path.name.endswith(_TEXT_SUFFIXES) or path.stat().st_size > _MAX_SCRUB_BYTES:
            return False
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if "/" not in text:
            return False
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError:
                new = self.text(text, known_only=known_only)
            else:
                cleaned = self._json(data, known_only)
                if cleaned == data:
                    return False
                new = json.dumps(cleaned, indent=2, sort_keys=False) + "\n"
        else:
            new = self.text(text, known_only=known_only)
        if new == text:
            return False
        path.write_text(new, encoding="utf-8")
        return True


def _local(match: re.Match[str]) -> str:
    path = match.group(0)
    top = path.split("/")[1]
    # Only paths into this machine's own tree: '/v1' of an API or '1/2' in a sentence stay.
    if not top or not os.path.isdir("/" + top):
        return path
    return "<local>/" + path.rstrip("/").rsplit("/", 1)[-1]


# --- the adapter -------------------------------------------------------------------------------------


def normalise_adapter(adapter: Path, base_name: str, scrubber: PathScrubber) -> list[str]:
    """Rewrite this machine's directories out of the adapter's text files; return the fixes made, in words.

    ``adapter_config.json``'s ``base_model_name_or_path`` becomes ``base_name`` when it
    is an absolute path (vLLM never reads it; the contract names the base).
    """
    fixes: list[str] = []
    config = adapter / "adapter_config.json"
    data = read_json(config)
    if isinstance(data, dict):
        value = data.get("base_model_name_or_path")
        if isinstance(value, str) and (value.startswith("/") or value.startswith("~")):
            before = file_sha256(config)
            data["base_model_name_or_path"] = base_name
            config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            fixes.append(
                f"adapter_config.json: base_model_name_or_path was a local path, set to the contract's "
                f"base {base_name!r} (sha256 {before} -> {file_sha256(config)})"
            )
    for path in sorted(adapter.iterdir()):
        # Only this machine's own directories: a vocabulary may hold tokens that look like paths.
        if path.is_file() and not path.is_symlink():
            before = file_sha256(path)
            if scrubber.file(path, known_only=True):
                fixes.append(f"{path.name}: local paths replaced (sha256 {before} -> {file_sha256(path)})")
    return fixes


def released_run_record(raw: Any, files: Mapping[str, str], fixes: list[str], scrubber: PathScrubber) -> Any:
    """The run record as the bundle carries it: paths scrubbed, adapter digests of the released files."""
    record = scrubber.json(raw)
    adapter = record.get("adapter") if isinstance(record, dict) else None
    if isinstance(adapter, dict) and isinstance(adapter.get("files"), dict):
        for name, sha in files.items():
            entry = adapter["files"].get(name)
            if isinstance(entry, dict) and entry.get("sha256") != sha:
                entry["sha256"] = sha
        if fixes:
            adapter["export_fixes"] = [*adapter.get("export_fixes", []), *(f"release: {f}" for f in fixes)]
    return record


# --- what a verifier recomputes ------------------------------------------------------------------------


def bundled_contract_digest(root: Path) -> str:
    """The contract digest recomputed from the bundle's own copies (``gate/contract.yaml`` + references)."""
    prefix = CONTRACT_FILES + "/"
    files = {f.path.removeprefix(prefix): f.sha256 for f in list_files(root) if f.path.startswith(prefix)}
    contract = root / CONTRACT
    if contract.is_symlink() or not contract.is_file():
        raise InputError(f"bundle holds no contract ({CONTRACT})")
    return contract_digest(file_sha256(contract), files)


def bundle_problems(root: Path, verdict: Any) -> list[str]:
    """What the bundle's own bytes contradict in its verdict (empty when nothing)."""
    problems: list[str] = []
    try:
        actual = bundled_contract_digest(root)
    except InputError as e:
        problems.append(e.message)
    else:
        if actual != verdict.contract.sha256:
            problems.append(
                f"the contract digest recomputed from the bundled contract and its files is {actual}, "
                f"not the verdict's {verdict.contract.sha256} (a referenced file changed)"
            )
    run = root / RUN_RECORD
    if run.is_file() and not run.is_symlink():
        data = read_json(run, max_bytes=_MAX_RUN_RECORD_BYTES)
        recorded = data.get("adapter", {}).get("files") if isinstance(data, dict) else None
        if isinstance(recorded, dict):
            for name, entry in sorted(recorded.items()):
                path = root / str(name)
                sha = entry.get("sha256") if isinstance(entry, dict) else None
                if not path.is_file() or path.is_symlink():
                    problems.append(f"run.json lists adapter file {name}, which the bundle lacks")
                elif sha != (got := file_sha256(path)):
                    problems.append(f"adapter file {name} has sha256 {got}, but run.json records {sha}")
    return problems
