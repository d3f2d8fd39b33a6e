"""One GPU session on ONE warm pool: issue 17's GPU pilot, then issue 14's throughput (vLLM 0.26, H200).

The process installs one :class:`gate.serving.PoolSet` (as a ``gate serve`` worker
does), so the pilot's gates and every release of the throughput measurement lease
the same warm vLLM server with its canary and warm parity reference:

1. ``gate pilot`` in-process (:func:`gate.pilot.run_pilot`): the spec trained by each
   toolkit on the GPU, every gate (check, smoke, eval) on repeat 1;
   ``RESULTS/pilot-h200.json`` holds each toolkit's training throughput and verdicts
   (and the whole matrix).
2. :func:`throughput_h200.measure` on a run of the pilot that passed every gate:
   ``RESULTS/throughput-h200.json``.

Each result file is written as soon as its phase ends, so a session cut short keeps
what it measured. ``bench/gpu/h200_session.sh`` prepares the host and runs this.

    python bench/gpu/h200_session.py --spec examples/smollm2/train.yaml --contract C --base DIR \\
        --toolkits unsloth,llamafactory --results OUT [--verdicts 10 --stream 50 --concurrency 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from throughput_h200 import measure, pool_summary  # noqa: E402

from gate.console import atomic_write_json  # noqa: E402


def _log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} h200: {message}", flush=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gate_summary(name: str, report: dict[str, Any] | None) -> dict[str, Any]:
    """What a toolkit's gate report says, in the matrix's terms (passed, why not, the key figures)."""
    if report is None:
        return {"status": "no report"}
    out: dict[str, Any] = {"passed": report.get("passed")}
    if name == "check":
        out["errors"] = [f.get("rule") for f in report.get("findings", []) if f.get("severity") == "error"]
    elif name == "smoke":
        out["failed_probes"] = report.get("failed_probes")
        out["probes"] = {p.get("name"): p.get("status") for p in report.get("probes", [])}
        parity = next((p for p in report.get("probes", []) if p.get("name") == "parity"), None)
        if parity is not None:
            out["parity"] = parity.get("message")
    elif name == "eval":
        out["error"] = report.get("error")
        out["failures"] = report.get("failures")
        out["metrics"] = [
            {
                k: m.get(k)
                for k in (
                    "task",
                    "metric",
                    "filter",
                    "n",
                    "reference_score",
                    "adapter",
                    "delta",
                    "lower_bound",
                    "test",
                    "passed",
                )
                if k in m
            }
            for m in report.get("metrics", [])
        ]
    return out


def _toolkit_row(run_dir: Path) -> dict[str, Any]:
    record = _read(run_dir / "run.json")
    if record is None:
        return {"status": "no run record", "run": run_dir.name}
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if k != "steps"}
    env = record.get("environment") or {}
    row: dict[str, Any] = {
        "run": run_dir.name,
        "status": record.get("status"),
        "toolkit": record.get("toolkit"),
        "packages": env.get("packages"),
        "device": (record.get("host") or {}).get("device_name"),
        "wall_seconds": record.get("wall_seconds"),
        "training": metrics,
        "failure": record.get("failure"),
    }
    row["gates"] = {
        g: _gate_summary(g, _read(run_dir / "gates" / f"{g}.json")) for g in ("check", "smoke", "eval")
    }
    row["all_gates_passed"] = all(v.get("passed") is True for v in row["gates"].values())
    return row


def pilot_phase(args: argparse.Namespace, results: Path, work: Path) -> tuple[dict[str, Any], Path | None]:
    """Run the pilot in-process; write ``pilot-h200.json``; return it and a run that passed every gate."""
    from gate.pilot import PilotRequest, run_pilot

    out = work / "pilot"
    toolkits = tuple(t for t in args.toolkits.split(",") if t)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "bench": "pilot_h200",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": _host(),
        "spec": {
            "file": str(args.spec),
            "sha256": hashlib.sha256(Path(args.spec).read_bytes()).hexdigest(),
        },
        "command": (
            f"gate pilot {args.spec} --toolkits {','.join(toolkits)} --repeats {args.repeats}"
            f" --eval-limit {args.eval_limit} --contract {args.contract} --base BASE"
            " (in-process, on the session's warm pool)"
        ),
        "toolkits": {},
        "not_run": json.loads(args.not_run.read_text()) if args.not_run else {},
    }
    error = None
    try:
        result = run_pilot(
            PilotRequest(
                spec_path=args.spec,
                toolkits=toolkits,
                out_dir=out,
                repeats=args.repeats,
                steps=args.steps,
                eval_limit=args.eval_limit,
                contract_path=args.contract,
                base=args.base,
            )
        )
        doc["matrix_complete"] = result.matrix.complete
    except Exception as e:  # the pilot's own failure is a result too
        error = f"{type(e).__name__}: {e}"
        doc["error"] = error
        doc["traceback"] = traceback.format_exc()[-4000:]
        _log(f"pilot failed: {error}")
    doc["seconds"] = round(time.monotonic() - started, 1)
    for tk in toolkits:
        runs = sorted((out / "runs").glob(f"{tk}-*")) if (out / "runs").is_dir() else []
        doc["toolkits"][tk] = [_toolkit_row(r) for r in runs] or [{"status": "no run directory"}]
    matrix = _read(out / "pilot.json")
    if matrix is not None:
        doc["matrix"] = matrix
    atomic_write_json(results / "pilot-h200.json", doc)
    for name in ("pilot.md", "pilot.json"):
        if (out / name).is_file():
            (results / name).write_bytes((out / name).read_bytes())
    _log(f"pilot written ({doc['seconds']}s)")
    rows = [row for tk in toolkits for row in doc["toolkits"][tk] if row.get("run")]
    # A run that passed every gate releases end to end; else the first trained run still gets verdicts.
    ranked = [r for r in rows if r.get("all_gates_passed")] + [
        r for r in rows if r.get("status") == "succeeded"
    ]
    return doc, (out / "runs" / ranked[0]["run"] if ranked else None)


def _host() -> dict[str, Any]:
    info: dict[str, Any] = {"node": platform.node(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as e:  # a report field
        info["torch"] = f"unavailable ({type(e).__name__})"
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception:
        info["transformers"] = None
    return info


def _code_commit() -> str | None:
    """The commit the code under test was staged from (``stage_h200.sh`` writes it beside ``gate/``)."""
    try:
        return (ROOT / "COMMIT").read_text().strip() or None
    except OSError:
        return None


_BOOT_LINE = re.compile(r"compil|graph|took|Loading|KV cache|memory|secs|seconds|Triton|triton|warm", re.I)


def boot_log(work: Path, limit: int = 80) -> list[str]:
    """The lines of the pool's vLLM server log that say where its boot time went (compile, graphs...)."""
    lines: list[str] = []
    for log in sorted(work.glob("pools/**/vllm-*.log"))[:2]:
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if len(lines) >= limit:
                    return lines
                if _BOOT_LINE.search(line) and "POST" not in line and "GET" not in line:
                    lines.append(line.strip()[:300])
    return lines


def pool_events(work: Path) -> list[dict[str, Any]]:
    """The pool's boot, boot canary and base-scoring events (the boot's phases in seconds)."""
    out = []
    for events in sorted(work.glob("pools/**/pool-events.jsonl"))[:2]:
        for line in events.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") in ("boot", "boot_canary", "boot_retry", "base_scores", "restart"):
                event.pop("baseline", None)
                out.append(event)
    return out[:20]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--contract", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--toolkits", default="unsloth,llamafactory", help="empty: no pilot (needs --run)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--eval-limit", type=int, default=20, help="the pilot's --eval-limit")
    parser.add_argument("--steps", type=int, default=None, help="override the spec's steps (CPU trials only)")
    parser.add_argument("--not-run", type=Path, default=None, help="a JSON file {toolkit: why not run}")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--verdicts", type=int, default=10)
    parser.add_argument("--stream", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--run", dest="fallback_run", type=Path, default=None, help="measure this run, not the pilot's"
    )
    args = parser.parse_args()

    from gate.gates import install_pools
    from gate.serving import PoolSet

    args.results.mkdir(parents=True, exist_ok=True)
    pools = PoolSet(log_dir=args.work / "pools", announce=False)
    install_pools(pools)
    pilot: dict[str, Any] | None = None
    try:
        run = None
        if any(t for t in args.toolkits.split(",")):
            pilot, run = pilot_phase(args, args.results, args.work)
        run = args.fallback_run or run
        summary = pool_summary(pools)
        doc: dict[str, Any] = {
            "bench": "throughput_h200",
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": pilot["host"] if pilot is not None else _host(),
            "contract": str(args.contract),
            "goal": {"time_to_verdict_s_max": 15, "adapters_per_gpu_hour_min": 1000},
            "script": "bench/gpu/h200_session.py (bench/gpu/throughput_h200.py:measure), via h200_session.sh",
            "code_commit": _code_commit(),
        }
        if run is None:
            doc["error"] = "no run to release: the pilot trained none and no --run was given"
        else:
            boots = summary.get("boot_seconds") or []
            _log(f"throughput from {run}")
            if pilot is not None:
                doc["source_run_passed_pilot_gates"] = any(
                    row.get("all_gates_passed")
                    for rows in pilot["toolkits"].values()
                    for row in rows
                    if row.get("run") == run.name
                )
            try:
                doc.update(
                    measure(
                        run,
                        args.contract,
                        args.base,
                        args.work / "throughput",
                        verdicts=args.verdicts,
                        stream=args.stream,
                        concurrency=args.concurrency,
                        boot_seconds=boots[0] if boots else None,
                        progress=_log,
                        save=lambda partial: atomic_write_json(
                            args.results / "throughput-h200.json", {**doc, **partial}
                        ),
                    )
                )
            except Exception as e:  # whatever was measured still gets written, with why it stopped
                doc["error"] = f"{type(e).__name__}: {e}"
                doc["traceback"] = traceback.format_exc()[-4000:]
                _log(f"measure failed: {doc['error']}")
        doc["pool"] = pool_summary(pools)
        doc["vllm_version"] = doc["pool"].get("vllm_version")
        boots = doc["pool"].get("boot_seconds") or []
        stream = doc.get("adapters_per_gpu_hour")
        if isinstance(stream, dict) and boots and "value_with_one_boot" not in stream:
            # The warm-up release paid the boot: an hour of a GPU that boots its pool once.
            stream["boot_s"] = boots[0]
            stream["value_with_one_boot"] = round(
                stream["adapters"] / (stream["wall_s"] + boots[0]) * 3600, 1
            )
        doc["boot"] = {"pool_events": pool_events(args.work), "vllm_log": boot_log(args.work)}
        atomic_write_json(args.results / "throughput-h200.json", doc)
        if pilot is not None:
            pilot["vllm_version"] = doc["vllm_version"]
            pilot["pool"] = doc["pool"]
            atomic_write_json(args.results / "pilot-h200.json", pilot)
        _log("throughput written")
    finally:
        install_pools(None)
        pools.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
