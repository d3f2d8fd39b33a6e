"""Training through toolkit plugins, with a run record for every run.

A :class:`Trainer` plugin turns a :class:`~gate.spec.TrainSpec` into its
toolkit's native config, declares the toolkit's pinned environment and the
command that trains. :func:`train` does the rest the same way for every
toolkit: it snapshots the dataset into the run directory, builds (or reuses)
the environment, runs the toolkit as a subprocess while parsing its log for a
progress bar, collects the PEFT adapter, and writes ``run.json``.

A run directory::

    RUN_DIR/run.json          the run record (contracts/run.schema.json)
    RUN_DIR/adapter/          the PEFT LoRA adapter, only after a successful run
    RUN_DIR/<native config>   e.g. llamafactory.yaml: repeat by hand with the toolkit alone
    RUN_DIR/data/train.jsonl  the exact dataset bytes trained on
    RUN_DIR/train.log         the toolkit's output

Example::

    record = train(Path("examples/smollm2/train.yaml"), "llamafactory", Path("runs/lf"))
    print(record.status, record.metrics.final_loss)
"""

from __future__ import annotations

from gate.registry import Registry as Registry
from gate.training.collect import REQUIRED_ADAPTER_FILES, TOKENIZER_FILES
from gate.training.driver import train
from gate.training.logs import LogParser
from gate.training.record import (
    ADAPTER_DIR,
    RECORD_NAME,
    RUN_SCHEMA_VERSION,
    AdapterFile,
    AdapterInfo,
    BaseModelInfo,
    CallerInfo,
    DatasetInfo,
    EnvironmentInfo,
    Failure,
    HostInfo,
    Metrics,
    NativeConfig,
    PromptInfo,
    RunRecord,
    StepLoss,
    ToolkitInfo,
    load_record,
    run_schema_json,
)
from gate.training.trainer import (
    DEFAULT_TIMEOUT_S,
    Breaks,
    Host,
    PlannedChange,
    RunContext,
    Trainer,
    check_overrides,
    get_trainer,
    trainers,
)

__all__ = [
    "ADAPTER_DIR",
    "DEFAULT_TIMEOUT_S",
    "RECORD_NAME",
    "REQUIRED_ADAPTER_FILES",
    "RUN_SCHEMA_VERSION",
    "TOKENIZER_FILES",
    "AdapterFile",
    "AdapterInfo",
    "BaseModelInfo",
    "Breaks",
    "CallerInfo",
    "DatasetInfo",
    "EnvironmentInfo",
    "Failure",
    "Host",
    "HostInfo",
    "LogParser",
    "Metrics",
    "NativeConfig",
    "PlannedChange",
    "PromptInfo",
    "RunContext",
    "RunRecord",
    "StepLoss",
    "ToolkitInfo",
    "Trainer",
    "check_overrides",
    "get_trainer",
    "load_record",
    "run_schema_json",
    "train",
    "trainers",
]
