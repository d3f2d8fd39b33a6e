"""Contracts: one versioned YAML file per serving target.

A contract pins everything a fine-tuned adapter must agree with before it is
handed to a server: the base model (identity digest, architecture, linear
shapes), the serving runtime (vLLM version range, LoRA limits), adapter rules,
the prompt contract (chat template, its digest, EOS ids, rendering fixtures),
smoke prompts, evaluation thresholds, the signing identity policy, the publish
target and whether a person must approve.

Example::

    from gate.contract import Contract
    from gate.resources import default_contract

    contract = Contract.from_yaml(default_contract())
    print(contract.serving.max_lora_rank, contract.sha256)

``python -m gate.contract --write-schema`` regenerates
``contracts/contract.schema.json`` from these models.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gate.contract_files import ContractDir, ContractFile, contract_digest, referenced_files
from gate.digests import file_sha256
from gate.errors import InputError
from gate.identity import require_current_format
from gate.validation import LimitError, contained_path, format_validation_errors, loads_yaml, read_bounded

__all__ = [
    "ALLOWED_MAX_LORA_RANKS",
    "AdapterRules",
    "Approval",
    "BaseModelSpec",
    "Contract",
    "EvalSpec",
    "EvalTask",
    "LoraSupport",
    "Message",
    "Metadata",
    "ModulePlacement",
    "PromptSpec",
    "Publish",
    "RenderFixture",
    "ServingSpec",
    "Signing",
    "SmokePrompt",
    "SmokeSpec",
    "schema_json",
]

#: The values vLLM accepts for ``--max-lora-rank`` (``config/lora.py``).
ALLOWED_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MaxLoraRank = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]

#: The contract-file format this gate reads (``metadata.version`` is the file's own revision).
SCHEMA_VERSION = 1
#: A contract is a small text file; anything larger is refused before parsing.
MAX_CONTRACT_BYTES = 256 << 10  # a contract is a few KB; YAML parsing costs ~5 s per MiB here
_MAX_TEMPLATE_BYTES = 256 << 10


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metadata(_Model):
    """Who owns the contract and which revision of it this is."""

    version: int = Field(ge=1, description="revision of this contract; bump it on every change")
    schema_version: Literal[1] = Field(default=1, description="contract file format read by gate")
    description: str = ""
    owners: list[str] = Field(default_factory=list)


class ModulePlacement(_Model):
    """Another place a module name occurs, with its own shape (MoE experts, a shared expert)."""

    path: str = Field(
        description="full name with {layer} and, for experts, {expert} placeholders, "
        "e.g. model.layers.{layer}.mlp.experts.{expert}.gate_proj"
    )
    shape: tuple[int, int] = Field(description="[out_features, in_features] at this path")
    layers: list[int] | None = Field(default=None, description="the layers it occurs in (null: every layer)")


class BaseModelSpec(_Model):
    """The base model the adapter is served on."""

    name: str
    source: str | None = Field(
        default=None,
        description="where the base is: 'builtin:smollm2', a model directory (relative to this file or "
        "absolute), or null: the directory registered under this identity with `gate base add`",
    )
    identity: str = Field(
        description="gate.identity.base_identity(), format v2: config semantics, tokenizer content, "
        "chat template and a digest of every weight tensor",
    )
    architecture: str = Field(description="config.json architectures[0], e.g. LlamaForCausalLM")
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)
    tie_word_embeddings: bool | None = None
    num_experts: int | None = Field(
        default=None, gt=0, description="MoE: experts per layer ({expert} values)"
    )
    eos_token_ids: list[int] = Field(min_length=1)
    tokenizer_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the base's tokenizer.json (an adapter with the same bytes skips vocab checks)",
    )
    linear_shapes: dict[str, tuple[int, int]] = Field(
        min_length=1, description="module name -> [out_features, in_features] of the base's linear layers"
    )
    module_paths: dict[str, str] = Field(
        default_factory=dict,
        description="module name -> its path in the base with a {layer} placeholder, "
        "e.g. model.layers.{layer}.self_attn.q_proj (default: model.layers.{layer}.<module>)",
    )
    module_layers: dict[str, list[int]] = Field(
        default_factory=dict,
        description="module name -> the layers its module_paths entry occurs in (default: every layer)",
    )
    extra_placements: dict[str, list[ModulePlacement]] = Field(
        default_factory=dict,
        description="module name -> further places it occurs with their shapes (MoE experts, shared "
        "experts, the dense layers of a sparse MoE)",
    )

    @field_validator("identity")
    @classmethod
    def _identity_format(cls, v: str) -> str:
        return require_current_format(v)

    def module_path(self, module: str, layer: int) -> str:
        """The base's full name of ``module`` in ``layer`` (what adapter tensor names must match)."""
        pattern = self.module_paths.get(module, "model.layers.{layer}." + module)
        return pattern.replace("{layer}", str(layer))

    def expected_modules(self) -> dict[str, tuple[int, int]]:
        """Every full module name the contract describes -> [out_features, in_features]."""
        every = list(range(self.num_hidden_layers))
        placements = [
            (
                module,
                ModulePlacement(
                    path=self.module_paths.get(module, "model.layers.{layer}." + module),
                    shape=shape,
                    layers=self.module_layers.get(module),
                ),
            )
            for module, shape in self.linear_shapes.items()
        ] + [(module, p) for module, ps in self.extra_placements.items() for p in ps]
        out: dict[str, tuple[int, int]] = {}
        experts = list(range(self.num_experts or 0))
        for _, p in placements:
            for layer in (p.layers if p.layers is not None else every) if "{layer}" in p.path else [0]:
                path = p.path.replace("{layer}", str(layer))
                for e in experts if "{expert}" in path else [0]:
                    out[path.replace("{expert}", str(e))] = p.shape
        return out


class LoraSupport(_Model):
    """Whether the admitted runtime versions serve LoRA on this base at all (``gate contract init``
    derives it from the architecture and the versions; ``gate check`` and ``gate smoke`` refuse
    every adapter of a contract that says they do not)."""

    served: bool = True
    reason: str = Field(default="", description="why not, as measured (the runtime's own error)")
    source: str = Field(default="", description="where the statement comes from (a measured run, code)")

    @model_validator(mode="after")
    def _reason_when_unserved(self) -> LoraSupport:
        if not self.served and not self.reason.strip():
            raise ValueError("served: false needs a reason (what the runtime does with a LoRA on this base)")
        return self


class ServingSpec(_Model):
    """The serving runtime and its LoRA limits (vLLM engine flags)."""

    runtime: Literal["vllm"] = "vllm"
    vllm_version: str = Field(description="PEP 440 specifier of the vLLM versions served: '>=0.26,<0.33'")
    max_lora_rank: MaxLoraRank = 16
    max_loras: int = Field(default=4, ge=1)
    lora_dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    max_model_len: int = Field(default=2048, gt=0)
    lora_support: LoraSupport = Field(
        default_factory=LoraSupport,
        description="whether these vLLM versions serve LoRA for this base's architecture at all",
    )

    @field_validator("vllm_version")
    @classmethod
    def _specifier(cls, v: str) -> str:
        try:
            spec = SpecifierSet(v)
        except InvalidSpecifier as e:
            raise ValueError(f"not a PEP 440 version specifier: {v!r}") from e
        if not list(spec):
            raise ValueError("must bound the vLLM versions, e.g. '>=0.26,<0.33'")
        return v

    def specifier(self) -> SpecifierSet:
        """``vllm_version`` as a :class:`SpecifierSet`."""
        return SpecifierSet(self.vllm_version)


PolicyFeature = Literal["use_rslora", "embedding_lora", "layers_to_transform"]


class AdapterRules(_Model):
    """What an adapter may contain beyond what vLLM itself refuses."""

    allowed_target_modules: list[str] = Field(min_length=1)
    rank_min: int = Field(default=1, ge=1)
    rank_max: int | None = Field(default=None, ge=1, description="defaults to serving.max_lora_rank")
    max_size_bytes: int = Field(default=256 << 20, gt=0, description="total size of the adapter directory")
    forbidden_features: list[PolicyFeature] = Field(
        default_factory=list, description="features vLLM accepts but this target refuses"
    )
    require_tokenizer_match: bool = Field(
        default=True, description="added tokens / special tokens in the adapter must equal the base's"
    )


class Message(_Model):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class RenderFixture(_Model):
    """Messages and the exact text the serving template must render for them."""

    name: str
    messages: list[Message] = Field(min_length=1)
    add_generation_prompt: bool = True
    expected: str


class PromptSpec(_Model):
    """The prompt contract: the template the server applies and how turns end."""

    chat_template: str = Field(default="", description="the template text; or give chat_template_file")
    chat_template_file: ContractFile | None = Field(
        default=None, description="path relative to the contract file"
    )
    chat_template_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    eos_token_ids: list[int] = Field(min_length=1)
    end_of_turn: str = Field(description="the token the template closes each turn with, e.g. <|im_end|>")
    fixtures: list[RenderFixture] = Field(min_length=1)

    @model_validator(mode="after")
    def _digest_matches(self) -> PromptSpec:
        if not self.chat_template:
            raise ValueError("give the serving template as chat_template or chat_template_file")
        got = hashlib.sha256(self.chat_template.encode()).hexdigest()
        if got != self.chat_template_sha256:
            raise ValueError(
                f"chat_template_sha256 {self.chat_template_sha256} does not match the template (sha256 {got})"
            )
        return self


class SmokePrompt(_Model):
    """A prompt the smoke test sends through the real server."""

    name: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(default=32, gt=0)
    expect_regex: str | None = None


class SmokeSpec(_Model):
    """Smoke-test prompts and thresholds (used by ``gate smoke``)."""

    prompts: list[SmokePrompt] = Field(min_length=1)
    parity_min_match: float = Field(default=0.9, ge=0, le=1)
    min_logprob_shift: float = Field(default=0.01, ge=0)
    max_ttft_s: float = Field(default=10.0, gt=0)
    min_tokens_per_s: float = Field(default=1.0, ge=0)
    latency_max_tokens: int = Field(
        default=32, gt=1, description="tokens generated (EOS ignored) to time decode"
    )
    canary_prompt: str = Field(
        default="The capital of France is",
        min_length=1,
        description="raw base-model prompt whose greedy log-probs a warm server must keep (poisoning check)",
    )
    canary_max_tokens: int = Field(default=4, gt=0)
    canary_tolerance: float = Field(default=0.1, gt=0, description="largest canary log-prob drift, in nats")
    parity_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="dtype of the transformers + PEFT reference for greedy parity"
    )
    parity_tie_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="a divergence where vLLM rated the reference's token within this many nats of its own "
        "choice is a numerical tie, not a mismatch",
    )


class EvalTask(_Model):
    """One lm-evaluation-harness task and its thresholds."""

    task: str
    metric: str
    filter: str = "none"
    kind: Literal["generate", "multiple_choice"]
    min: float | None = None
    max_regression: float = Field(default=0.0, ge=0)
    slice_field: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="a field of the task's JSONL documents naming their slice(s) (a string or a list of "
        "strings); the report breaks every metric down by it and names the slices that regressed",
    )


class EvalPlanning(_Model):
    """What the eval gate assumes about a task before its first run, to state its power up front."""

    discordance: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="share of documents on which adapter and base disagree (binary metrics)",
    )
    sd: float = Field(default=0.5, gt=0, description="sd of per-document differences (continuous metrics)")


class EvalSpec(_Model):
    """Evaluation tasks and thresholds (used by ``gate eval``)."""

    tasks_dir: ContractDir = Field(
        description="directory of lm-eval task YAML, relative to the contract file"
    )
    tasks: list[EvalTask] = Field(min_length=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    planning: EvalPlanning = Field(default_factory=EvalPlanning)
    underpowered: Literal["warn", "fail"] = Field(
        default="warn",
        description="what a task whose minimum detectable regression exceeds max_regression does",
    )
    slice_regression: Literal["warn", "fail"] = Field(
        default="warn", description="what a slice that regressed does while its task passes"
    )


class Signing(_Model):
    """How the release bundle is signed and which signer identity verifiers accept."""

    method: Literal["key", "certificate", "sigstore"] = "key"
    key_fingerprint: str | None = None
    certificate_identity: str | None = None
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None

    @model_validator(mode="after")
    def _identity_policy(self) -> Signing:
        if self.method == "sigstore" and not (self.sigstore_identity and self.sigstore_issuer):
            raise ValueError("method sigstore needs sigstore_identity and sigstore_issuer")
        return self


class Publish(_Model):
    """Where a released bundle goes."""

    target: str = Field(min_length=1, description="OCI reference, e.g. oci-layout://./out/registry:name")


class Approval(_Model):
    """Whether a person must approve a release after every gate passed."""

    required: bool = False


class Contract(_Model):
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


# --- loading helpers -------------------------------------------------------------------------------


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


# --- error messages --------------------------------------------------------------------------------


def _schema_hint() -> str:
    return "contracts/contract.schema.json (python -m gate.contract --write-schema)"


# --- JSON Schema -----------------------------------------------------------------------------------


def schema_json() -> str:
    """The contract JSON Schema as the text checked in at ``contracts/contract.schema.json``."""
    schema = Contract.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/gate/gate/contracts/contract.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from gate.console import atomic_write_text
    from gate.resources import contracts_dir

    parser = argparse.ArgumentParser(prog="python -m gate.contract", description=__doc__.splitlines()[0])
    parser.add_argument("--write-schema", action="store_true", help="regenerate the JSON Schema")
    parser.add_argument("--validate", type=Path, nargs="*", default=[], help="contract files to validate")
    args = parser.parse_args(argv)
    if args.write_schema:
        target = contracts_dir() / "contract.schema.json"
        atomic_write_text(target, schema_json())
        print(f"wrote {target}")
    for file in args.validate:
        try:
            Contract.from_yaml(file)
        except InputError as e:
            print(e.diagnostics(), file=sys.stderr)
            return 2
        print(f"{file}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
