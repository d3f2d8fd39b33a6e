"""The training driver: :func:`train` runs one toolkit the same way for every toolkit."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from gate import __version__
from gate.console import atomic_write_json, atomic_write_text, err, progress
from gate.envs import Env, ensure
from gate.errors import Error, InputError, ToolError
from gate.proc import Completed
from gate.spec import ResolvedSpec, TrainSpec
from gate.training.collect import collect_adapter
from gate.training.logs import LogParser
from gate.training.memory import MemorySampler
from gate.training.record import (
    ADAPTER_DIR,
    RECORD_NAME,
    BaseModelInfo,
    CallerInfo,
    DatasetInfo,
    EnvironmentInfo,
    Failure,
    Metrics,
    NativeConfig,
    PromptInfo,
    RunRecord,
    ToolkitInfo,
)
from gate.training.trainer import Host, RunContext, Trainer, check_overrides, get_trainer


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
        adapter = collect_adapter(trainer, ctx)
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
        sampler = stack.enter_context(MemorySampler(marker))
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
