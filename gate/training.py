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

import ast
import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate import __version__
from gate.console import atomic_write_json, atomic_write_text, err, progress
from gate.digests import file_sha256
from gate.envs import Env, EnvSpec, ensure, has_cuda
from gate.errors import Error, InputError, ToolError
from gate.proc import Completed, run_streamed
from gate.registry import Registry
from gate.spec import ResolvedSpec, TrainSpec

__all__ = [
    "RUN_SCHEMA_VERSION",
    "Breaks",
    "Host",
    "LogParser",
    "PlannedChange",
    "RunContext",
    "RunRecord",
    "StepLoss",
    "Trainer",
    "load_record",
    "run_schema_json",
    "train",
    "trainers",
]

RUN_SCHEMA_VERSION: Literal["1.0"] = "1.0"
RECORD_NAME = "run.json"
ADAPTER_DIR = "adapter"
#: Files a PEFT LoRA adapter directory must hold.
REQUIRED_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Tokenizer and template files copied from the base when a toolkit does not save them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
#: What is kept from a toolkit's output directory (checkpoints, optimizer state and logs are not).
_ADAPTER_KEEP = (*REQUIRED_ADAPTER_FILES, *TOKENIZER_FILES, "added_tokens.json", "README.md")
#: Bound on a toolkit's wall time; a few CPU steps take minutes.
DEFAULT_TIMEOUT_S = 6 * 3600.0


# --- the run record --------------------------------------------------------------------------------


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


# --- plugins ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """The machine a run happens on (decides CPU or CUDA settings)."""

    cuda: bool
    device_name: str

    @classmethod
    def detect(cls) -> Host:
        """Describe this machine."""
        cuda = has_cuda()
        name = (
            _gpu_name() if cuda else f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
        )
        return cls(cuda=cuda, device_name=name)

    def info(self) -> HostInfo:
        """The run-record view of this host."""
        return HostInfo(
            hostname=socket.gethostname(),
            platform=platform.platform(),
            machine=platform.machine(),
            cpu_count=os.cpu_count() or 1,
            device="cuda" if self.cuda else "cpu",
            device_name=self.device_name,
        )


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
        return ", ".join(names) or "NVIDIA GPU"
    except (OSError, subprocess.SubprocessError):
        return "NVIDIA GPU"


@dataclass(frozen=True)
class RunContext:
    """What a plugin needs to write its config: paths are relative to ``run_dir`` (the toolkit's cwd)."""

    resolved: ResolvedSpec
    run_dir: Path
    #: The model directory the toolkit loads: the base, or a view of it with the spec's template.
    model_dir: Path
    host: Host
    data_file: str = "data/train.jsonl"
    output_dir: str = "output"

    @property
    def spec(self) -> TrainSpec:
        """The validated spec."""
        return self.resolved.spec

    def total_steps(self) -> int:
        """Optimizer steps this run will take."""
        t = self.spec.training
        if t.max_steps is not None:
            return t.max_steps
        per_epoch = math.ceil(self.resolved.dataset.rows / (t.batch_size * t.grad_accum))
        return max(1, math.ceil(per_epoch * (t.epochs or 1)))


Breaks = Literal["template", "tokenizer", "eos", "vocab", "adapter"]


@dataclass(frozen=True)
class PlannedChange:
    """A template or tokenizer change a toolkit WILL make with the given spec (found before training)."""

    key: str
    what: str
    breaks: Breaks


class Trainer(ABC):
    """A toolkit plugin: native config, pinned environment, command."""

    #: Registry name, e.g. ``llamafactory``.
    name: ClassVar[str]
    #: The native config's file name in the run directory.
    config_filename: ClassVar[str]
    #: Distribution whose version is the toolkit version.
    dist_name: ClassVar[str]
    #: Why the native config is not what the toolkit's users write (None: it is). A pilot then
    #: counts no config lines or settings for this toolkit rather than compare unlike files.
    no_native_config: ClassVar[str | None] = None

    @abstractmethod
    def env_spec(self, host: Host) -> EnvSpec:
        """The pinned environment the toolkit runs in on ``host``."""

    @abstractmethod
    def native_config(self, ctx: RunContext) -> str:
        """The toolkit's own config text for this run (spec overrides merged last)."""

    @abstractmethod
    def command(self, env: Env, ctx: RunContext) -> list[str]:
        """The command that trains, run with ``ctx.run_dir`` as working directory."""

    def prepare(self, ctx: RunContext) -> None:  # noqa: B027 - optional hook
        """Write extra files the toolkit needs into the run directory (default: none)."""

    def adapter_output(self, ctx: RunContext) -> Path:
        """Where the toolkit saves the final adapter."""
        return ctx.run_dir / ctx.output_dir

    def planned_changes(self, spec: TrainSpec) -> list[PlannedChange]:
        """Template/tokenizer changes this toolkit will make given ``spec``'s overrides."""
        return []

    def model_config_updates(self, host: Host) -> dict[str, Any]:
        """``config.json`` keys the toolkit must see changed (e.g. fp32 weights on CPU); default none."""
        return {}

    def exact_losses(self, ctx: RunContext) -> list[StepLoss] | None:
        """Full-precision per-step losses from a file the toolkit wrote, if any (logs round them)."""
        return None

    def applied_settings(self, ctx: RunContext) -> dict[str, Any]:
        """Settings the plugin chose for this host (recorded in the run's hyperparameters)."""
        return {}

    def run(
        self, env: Env, ctx: RunContext, on_line: Callable[[str], None], extra_env: Mapping[str, str]
    ) -> Completed:
        """Run the toolkit to completion, streaming its output."""
        environ = env.environ(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                # Tokenized-dataset caches stay inside the run (never a stale cache from another run).
                "HF_DATASETS_CACHE": str(ctx.run_dir / ctx.output_dir / ".datasets-cache"),
                "TOKENIZERS_PARALLELISM": "false",
                # No telemetry from inside a training run (Axolotl posts usage to PostHog by default).
                "DO_NOT_TRACK": "1",
                "AXOLOTL_DO_NOT_TRACK": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
        )
        if not ctx.host.cuda:
            # Spinning OpenMP threads collapse throughput when the cores are shared (measured 2.5x
            # slower on 2 busy cores); sleeping waiters cost little on an idle machine.
            environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        environ.update(extra_env)
        return run_streamed(
            self.command(env, ctx),
            env=environ,
            cwd=ctx.run_dir,
            log_path=ctx.run_dir / "train.log",
            on_line=on_line,
            timeout=DEFAULT_TIMEOUT_S,
        )

    def overrides(self, spec: TrainSpec) -> dict[str, Any]:
        """The spec's raw override keys for this toolkit."""
        return dict(spec.overrides.get(self.name, {}))


trainers: Registry[Trainer] = Registry(
    "toolkit",
    Trainer,  # type: ignore[type-abstract]
    entry_point_group="gate.trainers",
)
trainers.register_lazy("llamafactory", "trainers.llamafactory:LlamaFactoryTrainer")
trainers.register_lazy("axolotl", "trainers.axolotl:AxolotlTrainer")
trainers.register_lazy("unsloth", "trainers.unsloth:UnslothTrainer")


def get_trainer(name: str) -> Trainer:
    """Instantiate the plugin registered as ``name`` (did-you-mean on a typo)."""
    return trainers.get(name)()


def check_overrides(spec: TrainSpec) -> None:
    """Refuse override sections naming no known toolkit (a typo would silently do nothing)."""
    import difflib

    known = trainers.names()
    for key in spec.overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known toolkits: {', '.join(known)}"
            raise InputError(f"overrides.{key}: no toolkit named '{key}'", hint=hint)


# --- log parsing -----------------------------------------------------------------------------------

_DICT = re.compile(r"\{['\"][^{}]*\}")
_GATE_EVENT = "GATE_EVENT "


class LogParser:
    """Pull per-step losses and final metrics out of a Hugging Face Trainer's log.

    All three toolkits train with transformers' Trainer, which prints one Python
    dict per logging step (``{'loss': 2.31, 'learning_rate': ...}``) and one with
    ``train_runtime`` at the end. Scripts gate ships may print ``GATE_EVENT {json}``.
    """

    def __init__(self) -> None:
        self.steps: list[StepLoss] = []
        self.final: dict[str, float] = {}
        self.tokens_seen: int | None = None
        self.peak_gpu_bytes: int | None = None
        self._structured = False

    def feed(self, line: str) -> StepLoss | None:
        """Parse one output line; return the step it completed, if any."""
        got: StepLoss | None = None
        for part in line.split("\r"):
            event = self._parse(part)
            if event is not None:
                got = event
        return got

    def _parse(self, text: str) -> StepLoss | None:
        if _GATE_EVENT in text:
            try:
                data = json.loads(text.split(_GATE_EVENT, 1)[1])
            except ValueError:
                return None
            if isinstance(data, dict):
                self._structured = True
                return self._record(data)
            return None
        if self._structured:
            # The script reports full-precision events; the Trainer's rounded dicts repeat them.
            return None
        for m in _DICT.finditer(text):
            try:
                data = ast.literal_eval(m.group(0))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(data, dict):
                step = self._record(data)
                if step is not None:
                    return step
        return None

    def _record(self, data: dict[str, Any]) -> StepLoss | None:
        nums: dict[str, float] = {}
        for k, v in data.items():
            with contextlib.suppress(TypeError, ValueError):
                nums[str(k)] = float(v)
        if "peak_gpu_memory_bytes" in nums:
            self.peak_gpu_bytes = int(nums["peak_gpu_memory_bytes"])
        if "num_input_tokens_seen" in nums:
            self.tokens_seen = int(nums["num_input_tokens_seen"])
        if "train_runtime" in nums:
            self.final.update(nums)
        if "loss" in nums and "eval_loss" not in nums:
            step = int(nums["step"]) if "step" in nums else len(self.steps) + 1
            rec = StepLoss(step=step, loss=nums["loss"], learning_rate=nums.get("learning_rate"))
            if self.steps and self.steps[-1].step == step:
                # The same step printed twice (rounded dict, then a full-precision event): keep the last.
                self.steps[-1] = rec
            else:
                self.steps.append(rec)
            return rec
        return None


class _MemorySampler:
    """Peak resident memory of every process carrying this run's marker in its environment."""

    def __init__(self, marker: str, interval: float = 0.5) -> None:
        self.marker = f"GATE_RUN_ID={marker}".encode()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gate-mem-sampler", daemon=True)

    def __enter__(self) -> _MemorySampler:
        if Path("/proc/self/environ").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/environ", "rb") as fh:
                        if self.marker not in fh.read(1 << 20).split(b"\0"):
                            continue
                    with open(f"/proc/{pid}/statm") as fh:
                        total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    continue
            self.peak = max(self.peak, total)


# --- the driver ------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _caller() -> CallerInfo:
    commit: str | None = None
    dirty: bool | None = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            st = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=30)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return CallerInfo(git_commit=commit, git_dirty=dirty, cwd=os.getcwd(), argv=list(sys.argv))


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink():
        raise InputError(f"--out {out_dir} is a symlink", hint="give a real directory path")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"--out {out_dir} exists and is not a directory")
        if any(out_dir.iterdir()):
            raise InputError(f"--out {out_dir} is not empty", hint="give a new directory for each run")
    out_dir.mkdir(parents=True, exist_ok=True)


def _stage_model_dir(resolved: ResolvedSpec, run_dir: Path, config_updates: Mapping[str, Any]) -> Path:
    """The base itself, or a view of it (symlinks) with the spec's template and the plugin's config."""
    if resolved.template_is_base and not config_updates:
        return resolved.base_dir
    view = run_dir / "model"
    view.mkdir()
    replaced = {"chat_template.jinja", "tokenizer_config.json", "config.json"}
    for item in sorted(resolved.base_dir.iterdir()):
        if item.name in replaced or not item.is_file():
            continue
        (view / item.name).symlink_to(item.resolve())
    config = json.loads((resolved.base_dir / "config.json").read_text(encoding="utf-8"))
    config.update(config_updates)
    (view / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    cfg_path = resolved.base_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    if not resolved.template_is_base:
        cfg.pop("chat_template", None)
    (view / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (view / "chat_template.jinja").write_text(resolved.chat_template, encoding="utf-8")
    return view


def _collect_adapter(trainer: Trainer, ctx: RunContext) -> AdapterInfo:
    """Copy the toolkit's final adapter into ``adapter/``, atomically, with tokenizer files."""
    src = trainer.adapter_output(ctx)
    missing = [f for f in REQUIRED_ADAPTER_FILES if not (src / f).is_file()]
    if missing:
        pickled = [p.name for p in src.glob("*.bin")] if src.is_dir() else []
        hint = (
            "it saved pickled weights (refused: never unpickled)"
            if pickled
            else f"see {ctx.run_dir / 'train.log'}"
        )
        raise ToolError(f"{trainer.name} finished but saved no {', '.join(missing)} in {src}", hint=hint)
    partial = ctx.run_dir / f".{ADAPTER_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in _ADAPTER_KEEP:
        f = src / name
        if f.is_file() and not f.is_symlink():
            shutil.copyfile(f, partial / name)
    changes: list[str] = []
    fixes: list[str] = []
    for name in TOKENIZER_FILES:
        reference = ctx.model_dir / name
        if not reference.is_file():
            continue
        if not (partial / name).is_file():
            # Toolkits that save no tokenizer: vLLM reads the base's anyway, and the
            # adapter directory must be self-describing for the contract check.
            shutil.copyfile(reference, partial / name)
            fixes.append(f"{name}: not saved by the toolkit, copied from the base")
            continue
        saved, ref = _json_or_text(partial / name), _json_or_text(reference)
        if saved == ref:
            continue
        if isinstance(saved, dict) and isinstance(ref, dict) and _strip_runtime(saved) == _strip_runtime(ref):
            # Only training-time settings differ (truncation length, padding side, load flags):
            # nothing the server reads, so the adapter carries the base's file byte for byte.
            keys = sorted(k for k in set(saved) | set(ref) if saved.get(k) != ref.get(k))
            shutil.copyfile(reference, partial / name)
            fixes.append(f"{name}: restored the base's (the toolkit changed {', '.join(keys)})")
        else:
            changes.append(name)
    _normalise_adapter_config(partial / "adapter_config.json", ctx.resolved.base_dir)
    if _normalise_model_card(partial / "README.md", ctx.model_dir, ctx.resolved.base_dir):
        fixes.append("README.md: the model card named this run's staged base view; it names the base")
    files = {
        p.name: AdapterFile(sha256=file_sha256(p), size=p.stat().st_size) for p in sorted(partial.iterdir())
    }
    final = ctx.run_dir / ADAPTER_DIR
    os.replace(partial, final)
    return AdapterInfo(
        files=files,
        size_bytes=sum(f.size for f in files.values()),
        tokenizer_changes=changes,
        export_fixes=fixes,
    )


#: tokenizer_config.json keys toolkits set for training that no server reads from an adapter.
_RUNTIME_KEYS = frozenset(
    {
        "model_max_length",
        "padding_side",
        "truncation_side",
        "is_local",
        "local_files_only",
        "name_or_path",
        "_commit_hash",
        "tokenizer_file",
        "clean_up_tokenization_spaces",
        "split_special_tokens",
    }
)


def _strip_runtime(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _RUNTIME_KEYS}


def _json_or_text(path: Path) -> Any:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return text


def _normalise_adapter_config(path: Path, base_dir: Path) -> None:
    """Point the adapter at the base by path (not at a template view) and sort ``target_modules``.

    PEFT saves ``target_modules`` from a Python set, so its order changes from run to run; sorted,
    identical training gives a byte-identical adapter_config.json.
    """
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ToolError(f"{path}: the toolkit wrote an unreadable adapter_config.json: {e}") from e
    if not isinstance(cfg, dict):
        raise ToolError(f"{path}: adapter_config.json is not a JSON object")
    new = dict(cfg, base_model_name_or_path=str(base_dir))
    if isinstance(new.get("target_modules"), list):
        new["target_modules"] = sorted(new["target_modules"], key=str)
    if new != cfg:
        path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _normalise_model_card(path: Path, staged: Path, base_dir: Path) -> bool:
    """Name the base, not this run's staged view of it, in the model card a toolkit wrote.

    PEFT's model card records the path it loaded the base from; with a template view
    that is ``RUN/model``, so two identical trainings in two run directories would
    otherwise differ in README.md alone. Returns whether the card changed.
    """
    if staged == base_dir or not path.is_file() or path.is_symlink() or path.stat().st_size > 4 << 20:
        return False
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    new = text.replace(str(staged), str(base_dir))
    if new == text:
        return False
    path.write_text(new, encoding="utf-8", errors="surrogateescape")
    return True


class _Run:
    """Mutable bookkeeping of one run; every state change rewrites run.json atomically."""

    def __init__(self, out_dir: Path, record: RunRecord) -> None:
        self.out_dir = out_dir
        self.record = record
        self.started = time.monotonic()

    def update(self, **fields: Any) -> None:
        self.record = self.record.model_copy(update=fields)
        self.write()

    def write(self) -> None:
        atomic_write_json(self.out_dir / RECORD_NAME, self.record.model_dump(mode="json"))

    def finish(self, status: Literal["succeeded", "failed"], failure: Failure | None = None) -> RunRecord:
        self.record = self.record.model_copy(
            update={
                "status": status,
                "failure": failure,
                "finished_at": _now(),
                "wall_seconds": round(time.monotonic() - self.started, 2),
            }
        )
        with contextlib.suppress(OSError):
            self.write()
        return self.record


def train(
    spec_path: Path,
    toolkit: str,
    out_dir: Path,
    *,
    steps: int | None = None,
    spec: TrainSpec | None = None,
    quiet: bool = False,
) -> RunRecord:
    """Train ``spec_path`` with ``toolkit`` into ``out_dir``; return the run record.

    Raises :class:`InputError` before touching ``out_dir`` for an unknown toolkit
    or a non-empty ``out_dir``. Any later failure is written to ``run.json``
    (status ``failed``, with the reason) and re-raised; ``out_dir/adapter`` then
    does not exist. ``spec`` (already validated) replaces reading ``spec_path``.
    """
    trainer = get_trainer(toolkit)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    host = Host.detect()
    run = _Run(
        out_dir,
        RunRecord(
            gate_version=__version__,
            run_id=uuid.uuid4().hex,
            status="running",
            toolkit=ToolkitInfo(name=trainer.name, version="unknown"),
            caller=_caller(),
            host=host.info(),
            started_at=_now(),
            spec_path=str(Path(spec_path).resolve()),
        ),
    )
    run.write()
    stage: Literal["input", "environment", "train", "collect"] = "input"
    restore = _terminate_as_interrupt()
    try:
        spec_sha256: str | None = None
        if spec is None:
            spec = TrainSpec.from_yaml(Path(spec_path))
            # The bytes just validated (bounded by from_yaml); a given spec has no file of its own.
            spec_sha256 = hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()
        spec = spec.with_steps(steps)
        check_overrides(spec)
        run.update(
            spec=spec,
            spec_sha256=spec_sha256,
            seed=spec.training.seed,
        )
        resolved = spec.resolve()
        data_dir = out_dir / "data"
        data_dir.mkdir()
        (data_dir / "train.jsonl").write_bytes(resolved.dataset.data)
        ctx = RunContext(
            resolved=resolved,
            run_dir=out_dir.resolve(),
            model_dir=_stage_model_dir(resolved, out_dir.resolve(), trainer.model_config_updates(host)),
            host=host,
        )
        run.update(
            dataset=DatasetInfo(
                source=str(resolved.dataset.path),
                snapshot=ctx.data_file,
                sha256=resolved.dataset.sha256,
                rows=resolved.dataset.rows,
                bytes=len(resolved.dataset.data),
            ),
            base_model=BaseModelInfo(path=str(resolved.base_dir), identity=resolved.base_identity),
            prompt=PromptInfo(
                source=resolved.template_source, chat_template_sha256=resolved.chat_template_sha256
            ),
            metrics=Metrics(total_steps=ctx.total_steps()),
        )

        stage = "environment"
        env = ensure(trainer.env_spec(host), quiet=quiet)
        env_spec = trainer.env_spec(host)
        run.update(
            toolkit=ToolkitInfo(name=trainer.name, version=env.packages.get(trainer.dist_name, "unknown")),
            environment=EnvironmentInfo(
                name=env.name,
                path=str(env.path) if env.path else None,
                python=str(env.python),
                lock_sha256=env.lock_sha256,
                packages=env.key_versions(env_spec.key_packages),
            ),
        )

        stage = "train"
        text = trainer.native_config(ctx)
        atomic_write_text(out_dir / trainer.config_filename, text)
        trainer.prepare(ctx)
        run.update(
            native_config=NativeConfig(
                filename=trainer.config_filename,
                sha256=hashlib.sha256(text.encode()).hexdigest(),
                text=text,
                command=trainer.command(env, ctx),
            ),
            hyperparameters={
                "lora": spec.lora.model_dump(mode="json"),
                "training": spec.training.model_dump(mode="json"),
                "plugin": trainer.applied_settings(ctx),
                "overrides": trainer.overrides(spec),
            },
        )
        done, parser, peak = _run_toolkit(trainer, env, ctx, run, quiet=quiet)
        exact = trainer.exact_losses(ctx) if done.returncode == 0 else None
        if exact:
            parser.steps = exact
        metrics = _metrics(parser, peak, ctx.total_steps())
        run.update(metrics=metrics)
        if done.returncode != 0:
            how = (
                f"was killed by signal {-done.returncode}"
                if done.returncode < 0
                else f"exited with {done.returncode}"
            )
            raise ToolError(
                f"{trainer.name} {how}",
                hint=f"last output:\n{done.tail[-1500:]}\nfull log: {out_dir / 'train.log'}",
            )
        if not metrics.steps:
            raise ToolError(
                f"{trainer.name} finished without logging a single training step",
                hint=f"see {out_dir / 'train.log'}",
            )

        stage = "collect"
        adapter = _collect_adapter(trainer, ctx)
        shutil.rmtree(ctx.run_dir / ctx.output_dir, ignore_errors=True)
        if adapter.tokenizer_changes and not quiet:
            err.print(
                f"[yellow]gate: {trainer.name} saved {', '.join(adapter.tokenizer_changes)} "
                "differently from the "
                "template source; `gate check` will judge them[/yellow]"
            )
        run.update(adapter=adapter)
        return run.finish("succeeded")
    except Error as e:
        _discard_partial(out_dir)
        run.finish("failed", Failure(stage=stage, message=e.message, hint=e.hint))
        raise
    except KeyboardInterrupt:
        _discard_partial(out_dir)
        run.finish("failed", Failure(stage="interrupted", message="interrupted (Ctrl-C or SIGTERM)"))
        raise
    except OSError as e:
        _discard_partial(out_dir)
        what = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        run.finish("failed", Failure(stage=stage, message=f"{what}: {e.filename or ''}".rstrip(": ")))
        raise ToolError(f"training failed while {stage}: {what}", hint=str(e.filename or "")) from e
    except Exception as e:
        _discard_partial(out_dir)
        run.finish("failed", Failure(stage="internal", message=f"{type(e).__name__}: {e}"))
        raise
    finally:
        restore()


def _terminate_as_interrupt() -> Callable[[], None]:
    """Turn SIGTERM into KeyboardInterrupt while training, so a killed gate still records the failure."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _discard_partial(out_dir: Path) -> None:
    for name in (f".{ADAPTER_DIR}.partial", ADAPTER_DIR, "output"):
        p = out_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _run_toolkit(
    trainer: Trainer, env: Env, ctx: RunContext, run: _Run, *, quiet: bool
) -> tuple[Completed, LogParser, int]:
    parser = LogParser()
    total = ctx.total_steps()
    marker = run.record.run_id
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(_MemorySampler(marker))
        bar = None if quiet else stack.enter_context(progress())
        task = bar.add_task(f"{trainer.name} training", total=total, status="starting") if bar else None

        def on_line(line: str) -> None:
            step = parser.feed(line)
            if bar is not None and task is not None and step is not None:
                bar.update(task, completed=min(step.step, total), status=f"loss {step.loss:.4f}")

        done = trainer.run(env, ctx, on_line, {"GATE_RUN_ID": marker, "PYTHONUNBUFFERED": "1"})
    return done, parser, sampler.peak


def _metrics(parser: LogParser, peak_rss: int, total_steps: int) -> Metrics:
    seconds = parser.final.get("train_runtime")
    tokens = parser.tokens_seen
    tps = round(tokens / seconds, 2) if tokens and seconds else None
    return Metrics(
        steps=parser.steps,
        total_steps=total_steps,
        final_loss=parser.steps[-1].loss if parser.steps else None,
        train_seconds=seconds,
        train_tokens=tokens,
        train_tokens_per_second=tps,
        peak_rss_bytes=peak_rss or None,
        peak_gpu_memory_bytes=parser.peak_gpu_bytes,
    )


def _main(argv: list[str] | None = None) -> int:
    import argparse

    from gate.resources import contracts_dir

    parser = argparse.ArgumentParser(prog="python -m gate.training")
    parser.add_argument("--write-schema", action="store_true", help="regenerate contracts/run.schema.json")
    args = parser.parse_args(argv)
    if args.write_schema:
        target = contracts_dir() / "run.schema.json"
        atomic_write_text(target, run_schema_json())
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
