"""The run record: ``run.json``, its JSON Schema (``contracts/run.schema.json``) and its reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate.errors import InputError
from gate.spec import TrainSpec

RUN_SCHEMA_VERSION: Literal["1.0"] = "1.0"
RECORD_NAME = "run.json"
ADAPTER_DIR = "adapter"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolkitInfo(_Model):
    """The toolkit that trained."""

    name: str
    version: str


class EnvironmentInfo(_Model):
    """The resolved isolated environment the toolkit ran in."""

    name: str
    path: str | None
    python: str
    lock_sha256: str = Field(description="sha256 of the committed lock the environment was installed from")
    packages: dict[str, str] = Field(description="versions of the toolkit's key packages")


class DatasetInfo(_Model):
    """The dataset snapshot trained on."""

    source: str = Field(description="the file the spec named")
    snapshot: str = Field(description="copy of the exact bytes, relative to the run directory")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=1)
    bytes: int = Field(ge=1)


class BaseModelInfo(_Model):
    """The base model trained on."""

    path: str
    # format v2 (gate.identity); runs recorded before it carry a v1 digest and stay readable
    identity: str = Field(pattern=r"^(v2:)?sha256:[0-9a-f]{64}$")


class PromptInfo(_Model):
    """The chat template the examples were rendered with."""

    source: str = Field(description="'base' (the base's own template) or the template file")
    chat_template_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class NativeConfig(_Model):
    """The toolkit's own config, saved beside the run (repeat by hand from the run directory)."""

    filename: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    text: str
    command: list[str] = Field(description="what ran, from the run directory as working directory")


class CallerInfo(_Model):
    """Who started the run."""

    git_commit: str | None = None
    git_dirty: bool | None = None
    cwd: str
    argv: list[str]


class HostInfo(_Model):
    """Where the run happened."""

    hostname: str
    platform: str
    machine: str
    cpu_count: int
    device: Literal["cpu", "cuda"]
    device_name: str


class StepLoss(_Model):
    """One optimizer step's training loss, as the toolkit logged it."""

    step: int = Field(ge=1)
    loss: float
    learning_rate: float | None = None


class Metrics(_Model):
    """What the run measured."""

    steps: list[StepLoss] = Field(default_factory=list)
    total_steps: int | None = None
    final_loss: float | None = None
    train_seconds: float | None = Field(default=None, description="toolkit-reported train_runtime")
    train_tokens: int | None = Field(default=None, description="input tokens seen, padding excluded")
    train_tokens_per_second: float | None = None
    peak_rss_bytes: int | None = Field(
        default=None, description="peak resident memory of the toolkit's processes"
    )
    peak_gpu_memory_bytes: int | None = None


class AdapterFile(_Model):
    """One file of the adapter."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class AdapterInfo(_Model):
    """The adapter the run produced."""

    dir: str = ADAPTER_DIR
    files: dict[str, AdapterFile]
    size_bytes: int
    tokenizer_changes: list[str] = Field(
        default_factory=list,
        description="tokenizer/template files the toolkit saved differently from the template source",
    )
    export_fixes: list[str] = Field(
        default_factory=list, description="what gate corrected in the toolkit's export, and why"
    )


class Failure(_Model):
    """Why a run failed."""

    stage: Literal["input", "environment", "train", "collect", "interrupted", "internal"]
    message: str
    hint: str | None = None


class RunRecord(_Model):
    """``run.json``: everything needed to audit and repeat a training run."""

    schema_version: Literal["1.0"] = RUN_SCHEMA_VERSION
    gate_version: str
    run_id: str
    status: Literal["running", "succeeded", "failed"]
    toolkit: ToolkitInfo
    environment: EnvironmentInfo | None = None
    spec: TrainSpec | None = None
    spec_path: str | None = None
    spec_sha256: str | None = None
    native_config: NativeConfig | None = None
    dataset: DatasetInfo | None = None
    base_model: BaseModelInfo | None = None
    prompt: PromptInfo | None = None
    seed: int | None = None
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="effective settings: LoRA, training, and what the plugin applied"
    )
    caller: CallerInfo
    host: HostInfo
    started_at: str
    finished_at: str | None = None
    wall_seconds: float | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    adapter: AdapterInfo | None = None
    failure: Failure | None = None
    log: str = "train.log"


def run_schema_json() -> str:
    """The JSON Schema of run.json, as checked in at ``contracts/run.schema.json``."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/gate/gate/contracts/run.schema.json",
        **RunRecord.model_json_schema(),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def load_record(run_dir: Path) -> RunRecord:
    """Read ``RUN_DIR/run.json``; :class:`InputError` if it is missing or malformed."""
    path = Path(run_dir) / RECORD_NAME
    try:
        if path.stat().st_size > 64 << 20:
            raise InputError(f"{path}: too large to be a run record")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{run_dir}: no {RECORD_NAME}", hint="give a directory written by `gate train`"
        ) from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable JSON run record: {e}") from None
    try:
        return RunRecord.model_validate(data)
    except ValueError as e:
        raise InputError(f"{path}: not a valid run record: {e}") from None
