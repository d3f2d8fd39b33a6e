"""The toolkit plugin interface: the host, a run's context, the :class:`Trainer` ABC and its registry."""

from __future__ import annotations

import math
import os
import platform
import socket
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from gate.envs import Env, EnvSpec, has_cuda
from gate.errors import InputError
from gate.proc import Completed, run_streamed
from gate.registry import Registry
from gate.spec import ResolvedSpec, TrainSpec
from gate.training.record import HostInfo, StepLoss

#: Bound on a toolkit's wall time; a few CPU steps take minutes.
DEFAULT_TIMEOUT_S = 6 * 3600.0


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
