"""The three shipped gates: the packaging contract, the smoke probes on a real server, the eval."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gate.console import atomic_write_text
from gate.errors import ServerError
from gate.gates._base import Gate, GateContext, GateReport, gate_dir
from gate.serving import ServingRuntime

if TYPE_CHECKING:
    from gate.evaluate import WarmEvaluator

__all__ = ["CheckGate", "EvalGate", "SmokeGate"]


class CheckGate(Gate):
    """``gate check``: the adapter against the contract, statically (no server)."""

    name = "check"

    def run(self, ctx: GateContext) -> GateReport:
        from gate.check import run_check

        return run_check(ctx.adapter, ctx.contract, ctx.base_dir)


class SmokeGate(Gate):
    """``gate smoke``: hot-load into the contract's runtime and probe it (canary-guarded on a pool)."""

    name = "smoke"
    needs_server = True

    def run(self, ctx: GateContext) -> GateReport:
        from gate.smoke import run_smoke, run_smoke_pooled

        out_dir = gate_dir(ctx, self.name)
        sink = ctx.on_event
        if ctx.servers.pool is not None:
            return run_smoke_pooled(
                ctx.servers.pool,
                ctx.adapter,
                base_dir=ctx.base_dir,
                out_dir=out_dir,
                on_event=sink,
                fail_fast=ctx.fail_fast,
                on_lease=ctx.servers.note_lease,
            )
        return run_smoke(
            ctx.adapter,
            ctx.contract,
            base_dir=ctx.base_dir,
            server=ctx.servers,
            out_dir=out_dir,
            on_event=sink,
            fail_fast=ctx.fail_fast,
        )


class EvalGate(Gate):
    """``gate eval``: lm-evaluation-harness, adapter against base, on the same server."""

    name = "eval"
    needs_server = True

    def run(self, ctx: GateContext) -> GateReport:
        pool = ctx.servers.pool
        if pool is None:
            return self._run(ctx, ctx.servers.get())
        # On a warm pool the evaluation is a candidate like the smoke probes: it holds a slot, and
        # its verdict stands only if the canary after it passes on the server it ran on; when the
        # server was restarted meanwhile (this or another candidate poisoned it) it runs again once.
        # A server that dies under the evaluation (lm-eval's requests fail) is the same case: the
        # canary restarts it, and the evaluation runs again there instead of ending in an error.
        for attempt in (1, 2):
            failure: ServerError | None = None
            with pool.lease(ctx.base_dir) as server:
                ctx.servers.note_lease(server)
                try:
                    report = self._run(ctx, server)
                except ServerError as exc:
                    failure = exc
            after = pool.check(ctx.base_dir)
            current = pool.is_current(ctx.base_dir, server)
            if failure is not None:
                if current or attempt == 2:  # the server it ran on still stands: the failure is the eval's
                    raise failure
                continue
            if after.ok and current:
                return report
        raise ServerError(
            f"the warm server failed its canary after this candidate's evaluation, twice: {after.reason}",
            hint="the candidate poisons the server (or the server is unstable); see the pool's events",
        )

    def _run(self, ctx: GateContext, server: ServingRuntime) -> GateReport:
        from gate.evaluate import WarmEvaluators

        pool = ctx.servers.pool
        if pool is None:
            return self._evaluate(ctx, server, None)
        # Warm lm-eval processes per pool (one per candidate evaluating at once): an evaluation no
        # longer pays an interpreter start.
        log_dir, size = pool.log_dir / "lm-eval", ctx.contract.serving.max_loras
        evaluators = pool.helper("lm-eval", lambda: WarmEvaluators(log_dir=log_dir, size=size))
        with evaluators.lease() as evaluator:
            return self._evaluate(ctx, server, evaluator)

    def _evaluate(
        self, ctx: GateContext, server: ServingRuntime, evaluator: WarmEvaluator | None
    ) -> GateReport:
        from gate.evaluate import run_eval, score_base

        base_scores = ctx.base_scores
        pool = ctx.servers.pool
        if base_scores is None and pool is not None:
            # The base's scores depend on the base and serving config (the pool's key) and on the task
            # data, which the contract digest covers: scored once per pool server and contract.
            key = (ctx.contract.sha256, ctx.eval_limit)
            base_scores = pool.base_scores(
                ctx.base_dir,
                key,
                lambda: score_base(
                    ctx.contract,
                    server=server,
                    base_dir=ctx.base_dir,
                    out_dir=ctx.work_dir / "base-eval",
                    limit=ctx.eval_limit,
                    evaluator=evaluator,
                ),
            )
        return run_eval(
            ctx.adapter,
            ctx.contract,
            base_dir=ctx.base_dir,
            server=server,
            out_dir=gate_dir(ctx, self.name),
            baseline=ctx.baseline,
            base_scores=base_scores,
            limit=ctx.eval_limit,
            evaluator=evaluator,
        )

    def write_extra(self, report: GateReport, target: Path) -> None:
        to_markdown = getattr(report, "to_markdown", None)
        if callable(to_markdown):
            atomic_write_text(target.with_suffix(".md"), str(to_markdown()))
