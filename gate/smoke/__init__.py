"""The serving smoke gate: hot-load an adapter into real vLLM and ask it.

A static check cannot see everything vLLM does wrong silently: it serves the
base model when adapter weights match no module, stops only on the BASE
tokenizer's EOS, and applies the BASE chat template. So ``gate smoke`` boots (or
attaches to) a real server, hot-loads the adapter and runs named probes:

``server``          the server is up and healthy
``weights_scan``    the weights file is readable and holds no NaN/Inf (never hot-loaded otherwise)
``load``            POST /v1/load_lora_adapter succeeds (vLLM's own message kept on failure)
``models``          the adapter is listed in /v1/models with the served base as parent
``chat``            each contract smoke prompt answers through /v1/chat/completions (matching expect_regex)
``completions``     the same prompts, rendered with the contract's template, through /v1/completions,
                    give the same greedy tokens (the server's template is the contract's)
``stops``           every answer ends with finish_reason "stop", not "length" (the never-stops failure)
``control_tokens``  no special/control token of the base leaks into the text
``logprob_shift``   the adapter moves the log-probs of the base's greedy tokens (teacher-forced, full
                    vocabulary) beyond numerical noise
``long_prompts``    finite log-probs on prompts past 128 and 400 tokens (vllm#48590)
``parity``          vLLM's greedy tokens are transformers + PEFT's best, position by position
                    (teacher-forced; a near-tie within the contract's margin is no mismatch)
``latency``         time to first token and decode tokens/s within the contract's budgets
``unload``          the adapter unloads
``canary``          (warm pool only) the base model still answers as at boot after this candidate

The report is JSON (``smoke-report.json``, written atomically). Example::

    report = run_smoke(adapter, contract, base_dir=base, server=None, out_dir=Path("out"))
    print(report.passed, [p.name for p in report.probes if not p.passed])

Layout: :mod:`._report` (the report model), :mod:`._run` (run state, prompt rendering),
:mod:`._probes` (the probes), :mod:`._parity` (the parity reference, one-shot or warm),
:mod:`._runner` (the run), :mod:`._pooled` (a run on a warm pool, guarded by the canary).

"""

from __future__ import annotations

from gate.serving import ReferenceProcess
from gate.smoke._parity import judge_positions
from gate.smoke._pooled import run_smoke_pooled
from gate.smoke._report import PROBES, REPORT_NAME, ProbeResult, SmokeReport
from gate.smoke._runner import ServerArg, run_smoke

__all__ = [
    "PROBES",
    "REPORT_NAME",
    "ProbeResult",
    "ReferenceProcess",
    "ServerArg",
    "SmokeReport",
    "judge_positions",
    "run_smoke",
    "run_smoke_pooled",
]
