"""The toolkit-neutral training spec: one YAML file, every toolkit.

A spec names the base model (and the identity digest it must have), a local
JSONL dataset of chat messages, the prompt template (the base model's own, which
is the serving template, unless a template file is given), the LoRA settings,
the training settings and raw per-toolkit overrides. Each trainer plugin
translates it into its toolkit's native config.

Example::

    from gate.spec import TrainSpec

    spec = TrainSpec.from_yaml(Path("examples/smollm2/train.yaml"))
    resolved = spec.resolve()          # base dir, dataset snapshot, template
    print(resolved.dataset.rows, resolved.dataset.sha256)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gate.errors import InputError
from gate.identity import require_current_format
from gate.safetensors_io import read_header
from gate.validation import LimitError, format_validation_errors, loads_json, loads_yaml, read_bounded

__all__ = [
    "MAX_DATASET_BYTES",
    "BaseSpec",
    "DatasetSnapshot",
    "DatasetSpec",
    "LoraSpec",
    "PromptSpec",
    "ResolvedSpec",
    "TrainSpec",
    "TrainingSpec",
    "base_linear_modules",
    "load_dataset",
]

#: A spec is a small text file; anything larger is refused before parsing.
MAX_SPEC_BYTES = 256 << 10
#: The dataset is read into memory once (its exact bytes are what is trained on).
MAX_DATASET_BYTES = 512 << 20
#: One JSONL row; a longer line is almost certainly not a chat example.
MAX_ROW_BYTES = 1 << 20
_MAX_TEMPLATE_BYTES = 256 << 10
_ROLES = ("system", "user", "assistant")

#: Names accepted for ``base.builtin`` (embedded bases gate can build itself).
BUILTIN_BASES = ("smollm2",)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseSpec(_Model):
    """The base model: a local Hugging Face directory or an embedded base."""

    path: str | None = Field(default=None, description="model directory, relative to the spec file")
    builtin: Literal["smollm2"] | None = Field(
        default=None, description="an embedded base gate builds itself (no hub access)"
    )
    identity: str | None = Field(
        default=None,
        description="expected gate.identity.base_identity() (format v2) of the base; checked before training",
    )

    @field_validator("identity")
    @classmethod
    def _identity_format(cls, v: str | None) -> str | None:
        return None if v is None else require_current_format(v, where="base.identity")

    @model_validator(mode="after")
    def _one_source(self) -> BaseSpec:
        if (self.path is None) == (self.builtin is None):
            raise ValueError("give exactly one of base.path or base.builtin")
        return self


class DatasetSpec(_Model):
    """A local JSONL file, one ``{"messages": [...]}`` chat example per line."""

    path: str = Field(description="JSONL file, relative to the spec file")


class PromptSpec(_Model):
    """The chat template the examples are rendered with while training."""

    template: Literal["base"] = Field(
        default="base",
        description="'base': the base model's own chat template, which is the template vLLM serves with",
    )
    template_file: str | None = Field(
        default=None,
        description="a Jinja chat template file (relative to the spec) used instead of the base's",
    )


class LoraSpec(_Model):
    """LoRA hyperparameters."""

    r: int = Field(default=8, ge=1, le=1024, description="rank")
    alpha: int = Field(default=16, ge=1, description="lora_alpha")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="leaf names of the base's linear modules",
    )


class TrainingSpec(_Model):
    """Optimisation settings; exactly one of ``max_steps`` and ``epochs``."""

    max_steps: int | None = Field(default=None, ge=1)
    epochs: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=4, ge=1, le=4096)
    grad_accum: int = Field(default=1, ge=1, le=4096)
    lr: float = Field(default=2e-4, gt=0, lt=1)
    warmup_steps: int = Field(default=0, ge=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    weight_decay: float = Field(default=0.0, ge=0)
    seq_len: int = Field(default=512, ge=16, le=1 << 20)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _one_length(self) -> TrainingSpec:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of training.max_steps or training.epochs")
        return self


class TrainSpec(_Model):
    """A training spec as read from YAML (see ``examples/smollm2/train.yaml``)."""

    version: Literal[1] = Field(default=1, description="spec file format")
    name: str = Field(default="run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    base: BaseSpec
    dataset: DatasetSpec
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    training: TrainingSpec
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="toolkit name -> raw keys merged into that toolkit's native config (last word)",
    )

    _source: Path | None = PrivateAttr(default=None)

    @classmethod
    def from_yaml(cls, path: Path) -> TrainSpec:
        """Read and validate a spec; :class:`InputError` names the file and field."""
        path = Path(path)
        data = read_bounded(path, MAX_SPEC_BYTES, what="training spec")
        try:
            raw = loads_yaml(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        except LimitError as e:
            raise InputError(f"{path}: refused: {e}") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML: {str(e)[:300]}") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: a training spec is a YAML mapping (got {type(raw).__name__})")
        spec = cls.from_dict(raw, where=str(path))
        spec._source = path.resolve()
        return spec

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = "spec", source: Path | None = None) -> TrainSpec:
        """Validate a spec given as a mapping (e.g. the copy kept in a run record)."""
        try:
            spec = cls.model_validate(raw)
        except ValidationError as e:
            raise InputError(
                format_validation_errors(where, e, TrainSpec),
                hint="see contracts/run.schema.json ($defs.TrainSpec)",
            ) from None
        if source is not None:
            spec._source = source.resolve()
        return spec

    @property
    def source(self) -> Path | None:
        """The YAML file this spec was read from (relative paths resolve against its directory)."""
        return self._source

    def with_steps(self, steps: int | None) -> TrainSpec:
        """This spec with ``training.max_steps`` replaced (``None`` keeps it unchanged)."""
        if steps is None:
            return self
        if steps < 1:
            raise InputError(f"--steps must be at least 1 (got {steps})")
        training = self.training.model_copy(update={"max_steps": steps, "epochs": None})
        new = self.model_copy(update={"training": training})
        new._source = self._source
        return new

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data (what run records keep)."""
        return self.model_dump(mode="json")

    def _path(self, rel: str) -> Path:
        root = self._source.parent if self._source else Path.cwd()
        return Path(os.path.normpath(root / os.path.expanduser(rel)))

    def resolve(self, *, check_identity: bool = True) -> ResolvedSpec:
        """Locate the base, read and validate the dataset, read the template: everything training needs."""
        from gate.base_model import base_identity, cached_smollm2

        if self.base.builtin == "smollm2":
            base_dir = cached_smollm2()
        else:
            assert self.base.path is not None
            base_dir = self._path(self.base.path)
            if not (base_dir / "config.json").is_file():
                raise InputError(
                    f"base.path: {base_dir} is not a model directory (no config.json)",
                    hint="point base.path at a Hugging Face model directory, or use base: {builtin: smollm2}",
                )
        identity = base_identity(base_dir)
        if check_identity and self.base.identity and self.base.identity != identity:
            raise InputError(
                f"base.identity: the base at {base_dir} is {identity}, the spec expects {self.base.identity}",
                hint="train on the base the spec names, or update base.identity",
            )
        modules = base_linear_modules(base_dir)
        unknown = [m for m in self.lora.target_modules if m not in modules]
        if unknown:
            tips = []
            for m in unknown:
                close = difflib.get_close_matches(m, sorted(modules), n=1)
                tips.append(f"'{m}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise InputError(
                f"lora.target_modules: {', '.join(tips)} not a linear module of the base",
                hint=f"the base has: {', '.join(sorted(modules))}",
            )
        dataset = load_dataset(self._path(self.dataset.path))
        if self.prompt.template_file:
            tpath = self._path(self.prompt.template_file)
            raw = read_bounded(tpath, _MAX_TEMPLATE_BYTES, what="chat template")
            try:
                template = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"prompt.template_file: {tpath} is not UTF-8 text") from e
            source = str(tpath)
        else:
            tfile = base_dir / "chat_template.jinja"
            if tfile.is_file():
                template = tfile.read_text(encoding="utf-8")
            else:
                cfg = json.loads((base_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
                template = cfg.get("chat_template") or ""
            if not isinstance(template, str) or not template:
                raise InputError(
                    f"the base at {base_dir} has no chat template",
                    hint="give prompt.template_file",
                )
            source = "base"
        return ResolvedSpec(
            spec=self,
            base_dir=base_dir,
            base_identity=identity,
            base_modules=frozenset(modules),
            dataset=dataset,
            chat_template=template,
            template_source=source,
        )


@dataclass(frozen=True)
class DatasetSnapshot:
    """The exact bytes of a dataset as validated; training reads these, not the live file."""

    path: Path
    data: bytes
    sha256: str
    rows: int


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec with its base located, dataset snapshotted and template read."""

    spec: TrainSpec
    base_dir: Path
    base_identity: str
    base_modules: frozenset[str]
    dataset: DatasetSnapshot
    chat_template: str
    #: ``"base"`` or the template file's path.
    template_source: str

    @property
    def chat_template_sha256(self) -> str:
        """Hex sha256 of the template text (what contracts pin)."""
        return hashlib.sha256(self.chat_template.encode()).hexdigest()

    @property
    def template_is_base(self) -> bool:
        """Whether training renders with the base's own (serving) template."""
        return self.template_source == "base"


def load_dataset(path: Path) -> DatasetSnapshot:
    """Read a JSONL chat dataset once, validate every row, and return its exact bytes and digest.

    Each line is ``{"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}``
    with at least one user message and an assistant message last. Errors name the line.
    """
    data = read_bounded(path, MAX_DATASET_BYTES, what="dataset")
    rows = 0
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        if len(raw) > MAX_ROW_BYTES:
            raise InputError(
                f"{where}: the row is {len(raw)} bytes, more than the {MAX_ROW_BYTES}-byte limit"
            )
        try:
            row = loads_json(raw)
        except UnicodeDecodeError:
            raise InputError(f"{where}: not UTF-8 text") from None
        except LimitError as e:
            raise InputError(f"{where}: refused: {e}") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON: {e.msg} (column {e.colno})") from None
        _check_row(row, where)
        rows += 1
    if rows == 0:
        raise InputError(f"{path}: the dataset has no rows", hint='one {"messages": [...]} object per line')
    return DatasetSnapshot(path=path, data=data, sha256=hashlib.sha256(data).hexdigest(), rows=rows)


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise InputError(f"{where}: a row must be a JSON object (got {type(row).__name__})")
    extra = sorted(set(row) - {"messages"})
    if extra:
        raise InputError(f"{where}: unknown key(s) {extra}", hint='a row is {"messages": [...]}')
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: 'messages' must be a non-empty list", hint='a row is {"messages": [...]}')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise InputError(f"{where}: messages[{i}] must be an object with exactly 'role' and 'content'")
        if m["role"] not in _ROLES:
            close = difflib.get_close_matches(str(m["role"]), _ROLES, n=1)
            tip = f"; did you mean '{close[0]}'?" if close else ""
            raise InputError(
                f"{where}: messages[{i}].role {m['role']!r} is not one of {', '.join(_ROLES)}{tip}"
            )
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise InputError(f"{where}: messages[{i}].content must be a non-empty string")
    if messages[-1]["role"] != "assistant":
        raise InputError(f"{where}: the last message must be the assistant's (got {messages[-1]['role']!r})")
    if not any(m["role"] == "user" for m in messages):
        raise InputError(f"{where}: no user message")


def base_linear_modules(base_dir: Path) -> set[str]:
    """Leaf names of the base's 2-D weights (``q_proj``, ``down_proj`` ...), read from safetensors headers."""
    names: set[str] = set()
    files = sorted(p for p in base_dir.glob("*.safetensors") if p.is_file() and not p.is_symlink())
    if not files:
        raise InputError(f"{base_dir}: no .safetensors weights", hint="the base must be saved as safetensors")
    for file in files:
        for key, info in read_header(file).tensors.items():
            parts = key.split(".")
            if len(parts) >= 2 and parts[-1] == "weight" and len(info.shape) == 2:
                names.add(parts[-2])
    return names


# --- error messages --------------------------------------------------------------------------------
