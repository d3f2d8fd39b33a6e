"""Build a :class:`PilotMatrix` from a pilot directory's run records and gate reports.

Every cell is computed by :func:`gate.pilot._matrix.trace` from its declared
sources, exactly as a reader would recompute it; a cell whose source is absent
(its run failed, a gate raised) gets no value and a reason, and is listed in
``missing``. Layout of a pilot directory::

    OUT/runs/<toolkit>-<i>/run.json, adapter/     ordinary RUN_DIRs (gate train)
    OUT/runs/<toolkit>-1/gates/{check,smoke,eval}.json   the gate reports of repeat 1
    OUT/envs/<toolkit>.json                       copy of the toolkit env's gate-env.json marker
    OUT/inputs/weights.<ext>                      the user's weights file, if any
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gate import __version__
from gate.errors import Error, InputError
from gate.pilot._matrix import (
    Cell,
    Criterion,
    Derive,
    PilotMatrix,
    RunInfo,
    Source,
    ToolkitResult,
    ToolkitScore,
    pointer_of,
    trace,
)
from gate.pilot._weights import DEFAULT_WEIGHTS, FAMILIARITY, NORMALISATION, Weights, default_weight, score

__all__ = ["build_matrix", "criteria_for", "headline", "run_id"]

#: The gates whose verdicts the headline reports, in release order.
GATE_NAMES = ("check", "smoke", "eval")
#: Training criteria measured on every repeat: the spread between repeats is their uncertainty.
_REPEATED = {
    "train.wall_seconds": "/wall_seconds",
    "train.tokens_per_second": "/metrics/train_tokens_per_second",
    "train.peak_rss_bytes": "/metrics/peak_rss_bytes",
    "train.final_loss": "/metrics/final_loss",
}
#: Criteria counted on the native config (not comparable for a toolkit that has none).
_NATIVE_CONFIG = ("effort.native_config_lines", "custom.native_config_keys")


def run_id(toolkit: str, repeat: int) -> str:
    """The run directory name of ``toolkit``'s repeat ``repeat``."""
    return f"{toolkit}-{repeat}"


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


def _load(root: Path, rel: str) -> Any:
    try:
        return json.loads((root / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _index(items: Any, field: str, value: str) -> int | None:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get(field) == value:
                return i
    return None


class _Column:
    """Builds one toolkit's cells, recording why a cell could not be measured."""

    def __init__(self, root: Path, toolkit: str, repeats: int, weights_file: str | None) -> None:
        self.root, self.toolkit, self.repeats = root, toolkit, repeats
        self.weights_file = weights_file
        self.cells: dict[str, Cell] = {}
        self.runs = [self._run(i) for i in range(1, repeats + 1)]
        self.r1 = f"runs/{run_id(toolkit, 1)}"

    def _run(self, i: int) -> RunInfo:
        rid = run_id(self.toolkit, i)
        record = _load(self.root, f"runs/{rid}/run.json")
        if not isinstance(record, dict):
            return RunInfo(
                id=rid,
                toolkit=self.toolkit,
                repeat=i,
                dir=f"runs/{rid}",
                status="missing",
                failure="no run.json",
            )
        status = record.get("status")
        failure = record.get("failure") if isinstance(record.get("failure"), dict) else None
        return RunInfo(
            id=rid,
            toolkit=self.toolkit,
            repeat=i,
            dir=f"runs/{rid}",
            status="succeeded" if status == "succeeded" else "failed",
            failure=f"{failure.get('stage')}: {failure.get('message')}" if failure else None,
        )

    def why_missing(self, sources: Sequence[Source], error: str) -> str:
        for run in self.runs:
            if run.status != "succeeded" and any(s.file.startswith(run.dir + "/") for s in sources):
                return f"run {run.id} {run.status}" + (f" ({run.failure})" if run.failure else "")
        return error

    def add(
        self,
        key: str,
        unit: str,
        sources: Sequence[Source],
        derive: Derive = "value",
        where: dict[str, Any] | None = None,
        missing: str | None = None,
    ) -> None:
        cell = Cell(value=None, unit=unit, derive=derive, sources=tuple(sources), where=where)
        absent = next((x.file for x in sources if not (self.root / x.file).exists()), None)
        if absent is not None and derive != "fraction_equal":
            self.cells[key] = cell.model_copy(update={"missing": self.why_missing(sources, f"no {absent}")})
            return
        if missing is not None:
            self.cells[key] = cell.model_copy(update={"missing": self.why_missing(sources, missing)})
            return
        try:
            value = trace(cell, self.root)
        except (OSError, KeyError, IndexError, ValueError, TypeError, Error) as e:
            reason = self.why_missing(sources, f"{type(e).__name__}: {e}")
            self.cells[key] = cell.model_copy(update={"missing": reason})
            return
        if value is None:
            self.cells[key] = cell.model_copy(update={"missing": self.why_missing(sources, "not reported")})
            return
        self.cells[key] = cell.model_copy(update={"value": value})

    def build(self, eval_metrics: Sequence[str]) -> None:
        r1, run_json = self.r1, f"{self.r1}/run.json"
        env_file = f"envs/{self.toolkit}.json"
        marker = _load(self.root, env_file)
        digest = marker.get("lock_sha256") if isinstance(marker, dict) else None
        self.add(
            "setup.env_build_seconds", "s", [Source(file=env_file, pointer="/build_seconds", digest=digest)]
        )
        self.add(
            "setup.env_size_bytes", "bytes", [Source(file=env_file, pointer="/size_bytes", digest=digest)]
        )
        self.add("train.wall_seconds", "s", [Source(file=run_json, pointer="/wall_seconds")])
        self.add(
            "train.tokens_per_second",
            "tokens/s",
            [Source(file=run_json, pointer="/metrics/train_tokens_per_second")],
        )
        self.add("train.peak_rss_bytes", "bytes", [Source(file=run_json, pointer="/metrics/peak_rss_bytes")])
        self.add("train.final_loss", "loss", [Source(file=run_json, pointer="/metrics/final_loss")])

        check = f"{r1}/gates/check.json"
        self.add("check.errors", "findings", [Source(file=check, pointer="/summary/errors")])
        self.add("check.warnings", "findings", [Source(file=check, pointer="/summary/warnings")])

        smoke = f"{r1}/gates/smoke.json"
        self.add("smoke.passed", "bool", [Source(file=smoke, pointer="/passed")])
        probes = (_load(self.root, smoke) or {}).get("probes")
        parity, stops = _index(probes, "name", "parity"), _index(probes, "name", "stops")
        no_probe = "the smoke report has no {} probe"
        self.add(
            "smoke.parity_match_rate",
            "fraction",
            [Source(file=smoke, pointer=pointer_of("probes", parity or 0, "details", "match_rate"))],
            missing=None if parity is not None else no_probe.format("parity"),
        )
        self.add(
            "smoke.stop_rate",
            "fraction",
            [Source(file=smoke, pointer=pointer_of("probes", stops or 0, "details", "answers"))],
            derive="fraction_where",
            where={"finish_reason": "stop"},
            missing=None if stops is not None else no_probe.format("stops"),
        )
        self.add(
            "smoke.failed_probes", "probes", [Source(file=smoke, pointer="/failed_probes")], derive="len"
        )

        ev = f"{r1}/gates/eval.json"
        self.add("eval.passed", "bool", [Source(file=ev, pointer="/passed")])
        metrics = (_load(self.root, ev) or {}).get("metrics")
        for key in eval_metrics:
            i = _index(metrics, "key", key)
            gone = None if i is not None else f"the eval report has no metric {key}"
            for suffix, field in (("base", "reference_score"), ("adapter", "adapter"), ("delta", "delta")):
                self.add(
                    f"eval.{key}.{suffix}",
                    "score",
                    [Source(file=ev, pointer=pointer_of("metrics", i or 0, field))],
                    missing=gone,
                )

        all_runs = [f"runs/{run_id(self.toolkit, i)}/run.json" for i in range(1, self.repeats + 1)]
        if self.repeats > 1:
            self.add(
                "repro.adapter_identical",
                "bool",
                [Source(file=f, pointer="/adapter/files/adapter_model.safetensors/sha256") for f in all_runs],
                derive="all_equal",
            )
            self.add(
                "repro.max_weight_diff",
                "abs",
                [
                    Source(file=f"runs/{run_id(self.toolkit, i)}/adapter/adapter_model.safetensors")
                    for i in range(1, self.repeats + 1)
                ],
                derive="max_abs_weight_diff",
            )
            self.add(
                "repro.final_loss_diff",
                "loss",
                [Source(file=f, pointer="/metrics/final_loss") for f in all_runs],
                derive="max_abs_diff",
            )
        self.add(
            "reliability.success_rate",
            "fraction",
            [Source(file=f, pointer="/status") for f in all_runs],
            derive="fraction_equal",
            where={"equals": "succeeded"},
        )
        self.add(
            "effort.native_config_lines",
            "lines",
            [Source(file=run_json, pointer="/native_config/text")],
            derive="lines",
        )
        self.add(
            "effort.fixes", "fixes", [Source(file=run_json, pointer="/adapter/export_fixes")], derive="len"
        )
        self.add(
            "observability.logged_steps",
            "records",
            [Source(file=run_json, pointer="/metrics/steps")],
            derive="len",
        )
        self.add(
            "observability.metric_fields",
            "fields",
            [Source(file=run_json, pointer="/metrics")],
            derive="count_non_null",
        )
        self.add(
            "custom.native_config_keys",
            "keys",
            [Source(file=run_json, pointer="/native_config/text")],
            derive="config_keys",
        )
        if self.weights_file is not None:
            self.add(
                FAMILIARITY,
                "0..1",
                [Source(file=self.weights_file, pointer=pointer_of(FAMILIARITY, self.toolkit))],
            )

    def add_uncertainty(self, key: str, sources: Sequence[Source], basis: str) -> None:
        """Attach to cell ``key`` the half-width of its uncertainty: ``max |x_i - x_1|`` over ``sources``."""
        cell = self.cells.get(key)
        if cell is None or cell.value is None:
            return
        spread = Cell(value=None, unit=cell.unit, derive="max_abs_diff", sources=tuple(sources), basis=basis)
        try:
            value = trace(spread, self.root)
        except (OSError, KeyError, IndexError, ValueError, TypeError, Error) as e:
            spread = spread.model_copy(update={"missing": f"{type(e).__name__}: {e}"})
        else:
            spread = spread.model_copy(update={"value": value})
        self.cells[key] = cell.model_copy(update={"uncertainty": spread})

    def uncertainties(self, eval_metrics: Sequence[str]) -> None:
        """The spread between repeats (training) and the eval's paired-bound margin (eval deltas)."""
        if self.repeats > 1:
            runs = [f"runs/{run_id(self.toolkit, i)}/run.json" for i in range(1, self.repeats + 1)]
            for key, pointer in _REPEATED.items():
                sources = [Source(file=f, pointer=pointer) for f in runs]
                self.add_uncertainty(key, sources, f"spread between {self.repeats} repeats")
        ev = f"{self.r1}/gates/eval.json"
        metrics = (_load(self.root, ev) or {}).get("metrics")
        for key in eval_metrics:
            i = _index(metrics, "key", key)
            if i is None or not isinstance(metrics, list):
                continue
            m = metrics[i]
            conf = m.get("confidence")
            level = f"one-sided {conf:.0%} " if isinstance(conf, float) else ""
            basis = f"margin of the eval's {level}paired lower bound ({m.get('test')}, n={m.get('n')})"
            sources = [Source(file=ev, pointer=pointer_of("metrics", i, f)) for f in ("delta", "lower_bound")]
            self.add_uncertainty(f"eval.{key}.delta", sources, basis)

    def not_applicable(self) -> None:
        """Mark the native-config criteria of a toolkit whose users write no config (its plugin says so)."""
        from gate.training import trainers

        try:
            why = getattr(trainers.get(self.toolkit), "no_native_config", None)
        except Error:
            return
        if not why:
            return
        for key in _NATIVE_CONFIG:
            cell = self.cells.get(key)
            if cell is not None:
                self.cells[key] = cell.model_copy(update={"value": None, "not_applicable": str(why)})

    def verdicts(self) -> dict[str, str]:
        """Each gate's verdict on repeat 1 from its report: passed, failed or not run."""
        out: dict[str, str] = {}
        for gate in GATE_NAMES:
            report = _load(self.root, f"{self.r1}/gates/{gate}.json")
            passed = report.get("passed") if isinstance(report, dict) else None
            out[gate] = "passed" if passed is True else "failed" if passed is False else "not run"
        return out

    def version(self) -> str | None:
        record = _load(self.root, f"{self.r1}/run.json")
        for i in range(2, self.repeats + 1):
            if isinstance(record, dict) and record.get("toolkit"):
                break
            record = _load(self.root, f"runs/{run_id(self.toolkit, i)}/run.json")
        tk = record.get("toolkit") if isinstance(record, dict) else None
        return str(tk.get("version")) if isinstance(tk, dict) and tk.get("version") else None


def build_matrix(
    root: Path,
    *,
    toolkits: Sequence[str],
    repeats: int,
    eval_metrics: Sequence[str],
    weights: Weights,
    weights_file: str | None,
    spec: Mapping[str, str],
    contract: Mapping[str, str],
    settings: Mapping[str, Any],
    phases: Mapping[str, float],
) -> PilotMatrix:
    """Read the pilot directory ``root`` and return its matrix (cells traced, scored, ``missing`` listed)."""
    root = Path(root)
    if weights.familiarity and weights_file is None:
        raise InputError(
            "team familiarity needs its weights file inside the pilot directory (it is the cells' source)"
        )
    fam_file = weights_file if weights.familiarity else None
    criteria = criteria_for(eval_metrics, repeats=repeats, familiarity=fam_file is not None)
    columns = []
    for tk in toolkits:
        col = _Column(root, tk, repeats, fam_file)
        col.build(eval_metrics)
        col.uncertainties(eval_metrics)
        col.not_applicable()
        columns.append(
            ToolkitResult(
                toolkit=tk,
                version=col.version(),
                runs=tuple(col.runs),
                cells=col.cells,
                verdicts=col.verdicts(),
            )
        )
    resolved = weights.resolve(criteria, toolkits)
    scores, unweighted = score(criteria, {t.toolkit: t.cells for t in columns}, resolved, weights.familiarity)
    missing = tuple(
        f"{t.toolkit}/{c.key}: {cell.missing}"
        for t in columns
        for c in criteria
        if (cell := t.cells.get(c.key)) is not None and cell.value is None and not cell.not_applicable
    )
    return PilotMatrix(
        gate_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        spec=dict(spec),
        contract=dict(contract),
        settings=dict(settings),
        criteria=tuple(criteria),
        toolkits=tuple(columns),
        weights=resolved,
        weights_source=weights.source,
        default_weights={
            **{k: v for k, v in DEFAULT_WEIGHTS.items() if any(c.key == k for c in criteria)},
            **{c.key: default_weight(c.key) for c in criteria if c.key.startswith("eval.") and c.better},
        },
        familiarity=dict(weights.familiarity),
        normalisation=NORMALISATION,
        scores=tuple(scores),
        unweighted=unweighted,
        headline=headline(columns, scores, resolved, unweighted),
        phases={k: round(v, 1) for k, v in phases.items()},
        missing=missing,
    )


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def headline(
    columns: Sequence[ToolkitResult],
    scores: Sequence[ToolkitScore],
    weights: Mapping[str, float],
    unweighted: Mapping[str, str],
) -> tuple[str, ...]:
    """What a reader must see first: gates nobody passes, who passes all, whether the scores separate."""
    lines: list[str] = []
    for gate in GATE_NAMES:
        if not any(t.verdicts.get(gate) == "passed" for t in columns):
            lines.append(f"No toolkit passes {gate}.")
    every = [t.toolkit for t in columns if all(t.verdicts.get(g) == "passed" for g in GATE_NAMES)]
    lines.append(
        f"Pass every gate: {_names(every)}."
        if every
        else "No toolkit passes every gate: none of these adapters could be released; "
        "the score only ranks them."
    )
    if not any(w > 0 and k not in unweighted for k, w in weights.items()):
        lines.append(
            "No criterion separates the toolkits: each is equal for all, not comparable, unmeasured, "
            "or its differences lie within the measurements' own uncertainty."
        )
        return tuple(lines)
    ranked = sorted(scores, key=lambda s: -s.score)
    best = ranked[0]
    tied = [s.toolkit for s in ranked[1:] if best.score - s.score <= best.uncertainty + s.uncertainty]
    text = f"Highest score: {best.toolkit} {best.score:.1f} ± {best.uncertainty:.1f}"
    if tied:
        text += f", not separated from {_names(tied)} (the scores overlap within their uncertainty)"
    lines.append(text + ".")
    return tuple(lines)
