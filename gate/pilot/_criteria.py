"""The rows of a pilot matrix: every criterion, its unit, which way is better and where it is read."""

from __future__ import annotations

from collections.abc import Sequence

from gate.pilot._matrix import Criterion
from gate.pilot._weights import FAMILIARITY

__all__ = ["criteria_for"]


def _c(key: str, group: str, label: str, unit: str, better: str | None, description: str) -> Criterion:
    return Criterion.model_validate(
        {
            "key": key,
            "group": group,
            "label": label,
            "unit": unit,
            "better": better,
            "description": description,
        }
    )


def criteria_for(eval_metrics: Sequence[str], *, repeats: int, familiarity: bool) -> list[Criterion]:
    """The matrix rows for a contract's eval metric keys (``task/metric,filter``) and the repeats."""
    rows = [
        _c(
            "setup.env_build_seconds",
            "setup",
            "environment build time",
            "s",
            "lower",
            "seconds gate took to build the toolkit's pinned environment (gate-env.json build_seconds)",
        ),
        _c(
            "setup.env_size_bytes",
            "setup",
            "environment size",
            "bytes",
            "lower",
            "bytes on disk of the toolkit's environment (gate-env.json size_bytes)",
        ),
        _c(
            "train.wall_seconds",
            "training",
            "train wall time",
            "s",
            "lower",
            "wall seconds of repeat 1, environment reuse included (run.json wall_seconds)",
        ),
        _c(
            "train.tokens_per_second",
            "training",
            "throughput",
            "tokens/s",
            "higher",
            "input tokens per second of training, padding excluded (run.json metrics)",
        ),
        _c(
            "train.peak_rss_bytes",
            "training",
            "peak memory",
            "bytes",
            "lower",
            "peak resident memory of the toolkit's processes (run.json metrics.peak_rss_bytes)",
        ),
        _c(
            "train.final_loss",
            "training",
            "final loss",
            "loss",
            "lower",
            "training loss of the last step of repeat 1",
        ),
        _c(
            "check.errors",
            "contract",
            "contract errors",
            "findings",
            "lower",
            "error findings of gate check against the contract",
        ),
        _c(
            "check.warnings",
            "contract",
            "contract warnings",
            "findings",
            "lower",
            "warning findings of gate check",
        ),
        _c("smoke.passed", "smoke", "smoke passed", "bool", "higher", "every smoke probe passed"),
        _c(
            "smoke.parity_match_rate",
            "smoke",
            "parity with transformers+PEFT",
            "fraction",
            "higher",
            "greedy-token match rate of vLLM vs transformers + PEFT (parity probe)",
        ),
        _c(
            "smoke.stop_rate",
            "smoke",
            "answers stopped on EOS",
            "fraction",
            "higher",
            "share of smoke answers with finish_reason stop (stops probe)",
        ),
        _c(
            "smoke.failed_probes",
            "smoke",
            "failed smoke probes",
            "probes",
            "lower",
            "number of smoke probes that did not pass",
        ),
        _c("eval.passed", "eval", "eval passed", "bool", "higher", "the eval gate passed"),
    ]
    for key in eval_metrics:
        rows += [
            _c(
                f"eval.{key}.base",
                "eval",
                f"{key} base",
                "score",
                None,
                "the base model's score, same server",
            ),
            _c(f"eval.{key}.adapter", "eval", f"{key} adapter", "score", None, "the adapter's score"),
            _c(
                f"eval.{key}.delta",
                "eval",
                f"{key} delta vs base",
                "score",
                "higher",
                "adapter minus base over the same documents",
            ),
        ]
    if repeats > 1:
        rows += [
            _c(
                "repro.adapter_identical",
                "reproducibility",
                "adapter bytes identical",
                "bool",
                "higher",
                "adapter_model.safetensors has the same sha256 in every repeat",
            ),
            _c(
                "repro.max_weight_diff",
                "reproducibility",
                "max weight difference",
                "abs",
                "lower",
                "largest absolute difference of any adapter weight between repeat 1 and another repeat",
            ),
            _c(
                "repro.final_loss_diff",
                "reproducibility",
                "final-loss difference",
                "loss",
                "lower",
                "largest absolute final-loss difference between repeat 1 and another repeat",
            ),
        ]
    rows += [
        _c(
            "reliability.success_rate",
            "reliability",
            "runs succeeded",
            "fraction",
            "higher",
            "training runs that succeeded / attempted (every repeat)",
        ),
        _c(
            "effort.native_config_lines",
            "operator effort",
            "native config lines",
            "lines",
            "lower",
            "non-empty lines of the native config the spec expanded to (run.json native_config.text)",
        ),
        _c(
            "effort.fixes",
            "operator effort",
            "fixes gate applied",
            "fixes",
            "lower",
            "corrections gate had to make to the toolkit's export (run.json adapter.export_fixes)",
        ),
        _c(
            "observability.logged_steps",
            "observability",
            "per-step records",
            "records",
            "higher",
            "per-step metric records the toolkit reported (run.json metrics.steps)",
        ),
        _c(
            "observability.metric_fields",
            "observability",
            "run metrics reported",
            "fields",
            "higher",
            "run-level metrics the toolkit's output let gate fill (non-null run.json metrics fields)",
        ),
        _c(
            "custom.native_config_keys",
            "customizability",
            "native config settings",
            "keys",
            "higher",
            "leaf keys of the native config: settings the plugin sets and a spec override can change",
        ),
    ]
    if familiarity:
        rows.append(
            _c(
                FAMILIARITY,
                "team",
                "team familiarity",
                "0..1",
                "higher",
                "typed by the user in the weights file (the only hand-typed value)",
            )
        )
    return rows
