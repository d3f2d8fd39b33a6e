"""The evaluation gate: lm-evaluation-harness scores the adapter against the base model.

lm-eval runs in its own isolated environment (``lm-eval[api]`` + transformers for
the tokenizer, no torch), as a subprocess, against the running vLLM server's
OpenAI-compatible API: generation tasks through ``local-chat-completions``,
multiple-choice tasks through ``local-completions``. Tasks are lm-eval YAML
files over local JSONL in the contract's ``eval.tasks_dir``; nothing is
downloaded. The adapter is hot-loaded into the same server that scores the
base, so both are scored by the same runtime over the same documents, and each
metric is judged on the PAIRED per-document differences (see
:mod:`gate.evaluate._stats`).

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

from gate.evaluate._baseline import Baseline, load_baseline, verified_baseline
from gate.evaluate._env import lm_eval_env_spec
from gate.evaluate._gate import check_inputs, run_eval
from gate.evaluate._power import PowerPlan, power_plan
from gate.evaluate._report import EvalReport, render_markdown
from gate.evaluate._runner import RequestPlan, score_base
from gate.evaluate._scores import ModelScores
from gate.evaluate._warm import WarmEvaluator, WarmEvaluators

__all__ = [
    "Baseline",
    "EvalReport",
    "ModelScores",
    "PowerPlan",
    "RequestPlan",
    "WarmEvaluator",
    "WarmEvaluators",
    "check_inputs",
    "lm_eval_env_spec",
    "load_baseline",
    "power_plan",
    "render_markdown",
    "run_eval",
    "score_base",
    "verified_baseline",
]
