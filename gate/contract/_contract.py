"""The contract model and its loader (bounded YAML, the template file, contained paths) and schema."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from gate.contract._eval import EvalSpec
from gate.contract._prompt import PromptSpec
from gate.contract._release import Approval, Publish, Signing
from gate.contract._section import Section
from gate.contract._serving import AdapterRules, BaseModelSpec, ServingSpec
from gate.contract._smoke import SmokeSpec
from gate.contract_files import contract_digest, referenced_files
from gate.digests import file_sha256
from gate.errors import InputError
from gate.validation import LimitError, contained_path, format_validation_errors, loads_yaml, read_bounded

#: The contract-file format this gate reads (``metadata.version`` is the file's own revision).
SCHEMA_VERSION = 1
#: A contract is a small text file; anything larger is refused before parsing.
MAX_CONTRACT_BYTES = 256 << 10  # a contract is a few KB; YAML parsing costs ~5 s per MiB here
_MAX_TEMPLATE_BYTES = 256 << 10


class Metadata(Section):
    """Who owns the contract and which revision of it this is."""

    version: int = Field(ge=1, description="revision of this contract; bump it on every change")
    schema_version: Literal[1] = Field(default=1, description="contract file format read by gate")
    description: str = ""
    owners: list[str] = Field(default_factory=list)


class Contract(Section):
    """A serving target's contract, as read from ``contracts/*.yaml``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    metadata: Metadata
    base_model: BaseModelSpec
    serving: ServingSpec
    adapter: AdapterRules
    prompt: PromptSpec
    smoke: SmokeSpec
    eval: EvalSpec
    signing: Signing = Field(default_factory=Signing)
    publish: Publish
    approval: Approval = Field(default_factory=Approval)

    _source_path: Path = PrivateAttr(default=Path("."))
    _yaml_sha256: str = PrivateAttr(default="")
    _content_sha256: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self) -> Contract:
        unknown = [m for m in self.adapter.allowed_target_modules if m not in self.base_model.linear_shapes]
        if unknown:
            raise ValueError(
                f"adapter.allowed_target_modules: {unknown} are not modules of the base "
                f"(base_model.linear_shapes has {sorted(self.base_model.linear_shapes)})"
            )
        if self.adapter.rank_max is not None and self.adapter.rank_max > self.serving.max_lora_rank:
            raise ValueError(
                f"adapter.rank_max {self.adapter.rank_max} exceeds "
                f"serving.max_lora_rank {self.serving.max_lora_rank}"
            )
        if self.adapter.rank_min > self.effective_rank_max:
            raise ValueError(f"adapter.rank_min {self.adapter.rank_min} exceeds the rank limit")
        return self

    @property
    def source_path(self) -> Path:
        """The YAML file this contract was read from."""
        return self._source_path

    @property
    def yaml_sha256(self) -> str:
        """Hex sha256 of the contract file's own bytes."""
        return self._yaml_sha256

    @property
    def sha256(self) -> str:
        """The contract's digest: its YAML and every file it references (eval tasks and data, templates).

        Computed on first use (``gate check`` of a contract needs none of the eval files)
        and kept: the release copies the same files into the bundle and re-checks the
        digest after the gates ran. Raises InputError when a referenced file is missing.
        """
        if self._content_sha256 is None:
            files = {name: file_sha256(path) for name, path in self.referenced_files().items()}
            self._content_sha256 = contract_digest(self._yaml_sha256, files)
        return self._content_sha256

    @property
    def report_digest(self) -> str:
        """:attr:`sha256`, or ``yaml:<hex>`` of the YAML alone when a referenced file is missing.

        For gates that never read the referenced files (``gate check``); a release
        always uses :attr:`sha256` and refuses a contract whose files are missing.
        """
        try:
            return self.sha256
        except InputError:
            return "yaml:" + self._yaml_sha256

    def referenced_files(self) -> dict[str, Path]:
        """Bundle name -> path of every file the contract references (:mod:`gate.contract_files`)."""
        return referenced_files(self)

    @property
    def effective_rank_max(self) -> int:
        """The highest adapter rank allowed: ``adapter.rank_max`` or ``serving.max_lora_rank``."""
        return self.adapter.rank_max or self.serving.max_lora_rank

    def resolve(self, rel: str) -> Path:
        """A path named in the contract, relative to the contract file's directory.

        It must be relative, stay inside the contract's directory and go through no
        symlink (a symlink could lead anywhere); only gate's own shipped contracts may
        point at gate's shipped examples (``../examples``).
        """
        return contained_path(
            self._source_path.parent,
            rel,
            where=str(self._source_path),
            extra_roots=_shipped_roots(self._source_path),
        )

    @classmethod
    def from_yaml(cls, path: Path) -> Contract:
        """Read and validate a contract file; :class:`InputError` names the bad field."""
        path = Path(path)
        data = read_bounded(path, MAX_CONTRACT_BYTES, what="contract")
        try:
            raw = loads_yaml(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except LimitError as e:
            raise InputError(f"{path}: refused: {e}") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML: {str(e)[:300]}") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: a contract is a YAML mapping (got {type(raw).__name__})")
        raw = _load_template_file(path, raw)
        try:
            contract = cls.model_validate(raw)
        except ValidationError as e:
            raise InputError(
                format_validation_errors(path, e, Contract), hint=f"the schema is {_schema_hint()}"
            ) from None
        contract._source_path = path
        contract._yaml_sha256 = hashlib.sha256(data).hexdigest()
        return contract


def _shipped_roots(contract_file: Path) -> tuple[Path, ...]:
    """Where a contract may reference files besides its own directory: gate's data, for gate's own."""
    from gate.resources import contracts_dir

    shipped = contracts_dir()
    if Path(os.path.abspath(contract_file.parent)) == Path(os.path.abspath(shipped)):
        return (shipped.parent,)
    return ()


def _load_template_file(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    prompt = raw.get("prompt")
    if not isinstance(prompt, dict) or not prompt.get("chat_template_file") or "chat_template" in prompt:
        return raw
    rel = prompt["chat_template_file"]
    if not isinstance(rel, str):
        return raw  # validation names the field
    where = f"{path}: prompt.chat_template_file"
    file = contained_path(path.parent, rel, where=where, extra_roots=_shipped_roots(path))
    data = read_bounded(file, _MAX_TEMPLATE_BYTES, what="chat template")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: prompt.chat_template_file: {rel} is not UTF-8 text") from e
    return {**raw, "prompt": {**prompt, "chat_template": text}}


def _schema_hint() -> str:
    return "contracts/contract.schema.json (python -m gate.contract --write-schema)"


def schema_json() -> str:
    """The contract JSON Schema as the text checked in at ``contracts/contract.schema.json``."""
    schema = Contract.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/gate/gate/contracts/contract.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
