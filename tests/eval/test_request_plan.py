"""The eval's request concurrency follows the serving runtime's capability (no vLLM boot needed)."""

from __future__ import annotations

import json
from pathlib import Path

from gate.evaluate import RequestPlan
from gate.evaluate._runner import _jobs_for, _run_lm_eval
from gate.evaluate._tasks import task_set, thresholds
from gate.proc import Completed
from gate.serving import VLLMServer


def test_a_cpu_or_attached_server_gets_one_loglikelihood_at_a_time_and_a_cuda_one_batched() -> None:
    attached = VLLMServer("http://127.0.0.1:1", "base")  # what attach() builds: no device is known
    cpu = VLLMServer("http://127.0.0.1:1", "base", cuda=False)
    cuda = VLLMServer("http://127.0.0.1:1", "base", cuda=True)
    assert not attached.batched_loglikelihood and not cpu.batched_loglikelihood
    assert cuda.batched_loglikelihood
    serial = RequestPlan.for_server(cpu)
    assert (serial.generation, serial.loglikelihood, serial.loglikelihood_batch) == (8, 1, 1)
    assert RequestPlan.for_server(attached) == serial
    batched = RequestPlan.for_server(cuda)
    assert batched.loglikelihood > 1 and batched.loglikelihood_batch > 1
    assert batched.generation > serial.generation


class _Recorder:
    """A warm evaluator that records the configuration it is handed and reports success."""

    def __init__(self) -> None:
        self.config: dict[str, object] = {}

    def run(self, config_path: Path, **kwargs: object) -> Completed:
        self.config = json.loads(config_path.read_text())
        return Completed(0, 0.0, "", None)


def test_the_lm_eval_configuration_carries_the_plan_of_the_server_it_scores_on(
    eval_contract,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    tasks = task_set(eval_contract)
    jobs = _jobs_for("adapter", "a1", thresholds(eval_contract), tmp_path / "raw")
    got = {}
    for cuda in (False, True):
        recorder = _Recorder()
        server = VLLMServer("http://127.0.0.1:1", "base", cuda=cuda)
        _run_lm_eval(
            jobs,
            server=server,
            tasks=tasks,
            base_dir=tmp_path,
            work_dir=tmp_path / "work",
            timeout=5.0,
            request_timeout=5.0,
            evaluator=recorder,  # type: ignore[arg-type]
        )
        got[cuda] = {k: recorder.config[k] for k in ("gen_concurrency", "ll_concurrency", "ll_batch_size")}
    assert got[False] == {"gen_concurrency": 8, "ll_concurrency": 1, "ll_batch_size": 1}
    plan = RequestPlan.for_server(VLLMServer("http://127.0.0.1:1", "base", cuda=True))
    assert got[True] == {
        "gen_concurrency": plan.generation,
        "ll_concurrency": plan.loglikelihood,
        "ll_batch_size": plan.loglikelihood_batch,
    }
