"""One toolkit's column of a pilot matrix: every cell traced from the pilot directory's files.

Layout of a pilot directory::

    OUT/runs/<toolkit>-<i>/run.json, adapter/     ordinary RUN_DIRs (gate train)
    OUT/runs/<toolkit>-1/gates/{check,smoke,eval}.json   the gate reports of repeat 1
    OUT/envs/<toolkit>.json                       copy of the toolkit env's gate-env.json marker
    OUT/inputs/weights.<ext>                      the user's weights file, if any
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gate.errors import Error
from gate.pilot._matrix import Cell, Derive, RunInfo, Source, pointer_of, trace
from gate.pilot._weights import FAMILIARITY

__all__ = ["GATE_NAMES", "Column", "run_id"]

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


class Column:
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
