"""Teacher-forced parity with transformers + PEFT: the ``parity`` probe and its (warm) reference.

The reference scores the server's own greedy tokens instead of generating its own:
each position is judged on its own, so one numerical tie no longer drags every later
token along with it, and a position where the server's token is within
``smoke.parity_tie_tolerance`` nats of the reference's best token is a tie, not a
mismatch. That holds on every CPU and GPU, where float reductions differ in the last
bits and greedy paths part at near-ties.

:class:`gate.serving.ReferenceProcess` is the warm form: one long-lived process per pool with the
base loaded once, each adapter applied and removed in turn, so parity costs one
forward pass per prompt instead of a process start and a model load per adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gate.console import atomic_write_json
from gate.errors import ServerError
from gate.serving import REFERENCE_SCRIPT, ServingRuntime, check_reference_result, reference_env_spec
from gate.smoke._report import ProbeResult, Status
from gate.smoke._report import clip as _clip
from gate.smoke._run import SmokeRun, messages, read_json_bounded

__all__ = ["judge_positions", "parity"]

_MAX_RESULT = 16 << 20


def judge_positions(positions: Sequence[dict[str, Any]], tolerance: float) -> tuple[int, int, int]:
    """(matching, ties, total) over teacher-forced positions.

    A position matches when the server's token is the reference's best, and is a tie when
    its reference log-prob is within ``tolerance`` nats of the best one's.
    """
    matching = ties = 0
    for p in positions:
        if int(p["token_id"]) == int(p["best_id"]):
            matching += 1
        elif float(p["best_logprob"]) - float(p["logprob"]) <= tolerance:
            ties += 1
    return matching, ties, len(positions)


def _request(run: SmokeRun) -> dict[str, Any]:
    return {
        "base_dir": str(run.base_dir),
        "adapter_dir": str(run.adapter_dir),
        "dtype": run.contract.smoke.parity_dtype,
        "prompts": [
            {"name": p.name, "messages": messages(p.messages), "token_ids": run.chat[p.name].token_ids}
            for p in run.contract.smoke.prompts
        ],
    }


def parity(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    smoke = run.contract.smoke
    missing = [p.name for p in smoke.prompts if p.name not in run.chat]
    if missing:
        return ProbeResult("parity", "fail", f"no vLLM answers to compare for {missing}", run.elapsed())
    request = _request(run)
    reference = run.reference.score(request) if run.reference is not None else _one_shot(run, request)
    rows = []
    matched = ties = total = 0
    for prompt, ref in zip(smoke.prompts, reference["prompts"], strict=True):
        positions = ref.get("positions") or []
        good, tied, count = judge_positions(positions, smoke.parity_tie_tolerance)
        matched += good + tied
        ties += tied
        total += count
        rows.append(
            {
                "prompt": prompt.name,
                "scored_tokens": count,
                "matching": good,
                "ties": tied,
                "mismatches": [
                    i for i, p in enumerate(positions) if _mismatch(p, smoke.parity_tie_tolerance)
                ],
                "match": 1.0 if count == 0 else (good + tied) / count,
                "vllm_text": _clip(run.chat[prompt.name].text, 200),
            }
        )
    rate = 1.0 if total == 0 else matched / total
    details = {
        "match_rate": rate,
        "parity_min_match": smoke.parity_min_match,
        "tie_tolerance": smoke.parity_tie_tolerance,
        "method": "teacher-forced: the reference scores the server's greedy tokens",
        "prompts": rows,
        "reference": {k: reference.get(k) for k in ("versions", "dtype", "seconds")},
        "warm_reference": run.reference is not None,
    }
    verdict: Status = "pass" if rate >= smoke.parity_min_match else "fail"
    tie_note = f", {ties} at a numerical tie" if ties else ""
    return ProbeResult(
        "parity",
        verdict,
        f"{rate:.1%} of vLLM's greedy tokens are transformers + PEFT's best (bar "
        f"{smoke.parity_min_match:.0%}){tie_note}",
        run.elapsed(),
        details,
    )


def _mismatch(position: dict[str, Any], tolerance: float) -> bool:
    same = int(position["token_id"]) == int(position["best_id"])
    return not same and float(position["best_logprob"]) - float(position["logprob"]) > tolerance


def _one_shot(run: SmokeRun, request: dict[str, Any]) -> dict[str, Any]:
    """Score in a process of its own (no warm reference): load the base, apply the adapter, exit."""
    from gate.envs import ensure
    from gate.proc import run_streamed

    env = ensure(reference_env_spec())
    work = run.out_dir / "reference"
    work.mkdir(parents=True, exist_ok=True)
    request_path, result = work / "request.json", work / "result.json"
    result.unlink(missing_ok=True)
    atomic_write_json(request_path, request)
    done = run_streamed(
        [str(env.python), str(REFERENCE_SCRIPT), str(request_path), str(result)],
        env=env.environ(),
        log_path=work / "reference.log",
        timeout=1800,
    )
    if done.returncode != 0 or not result.is_file():
        raise ServerError(
            f"the transformers + PEFT reference failed (exit {done.returncode})",
            hint=f"log {work / 'reference.log'}:\n{done.tail[-1500:]}",
        )
    return check_reference_result(
        read_json_bounded(result, _MAX_RESULT), len(request["prompts"]), str(result)
    )
