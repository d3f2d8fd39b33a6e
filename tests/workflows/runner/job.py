"""One job's steps, run as the Actions runner runs them.

Per step: ``if:`` decided by GitHub's evaluator with the job's status (``success()`` until a
step failed, ``failure()`` after, ``cancelled()`` once the job's ``timeout-minutes`` ran out;
``always()`` is always true), a fresh ``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY``,
``GITHUB_ENV``/``GITHUB_PATH`` carried to later steps, ``bash --noprofile --norc -eo pipefail``
for ``shell: bash``, ``continue-on-error``, a step's ``timeout-minutes``, and the ``steps``
context (``outputs``, ``outcome``, ``conclusion``). ``uses: ./PATH`` runs a local composite
action through its own steps with its declared inputs (defaults, then ``with:``) and outputs;
any other ``uses:`` goes to its explicit local mapping (runner/remote.py) or fails the step.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.workflows.runner.expressions import ExpressionError, Expressions, Status
from tests.workflows.runner.image import RunnerImage
from tests.workflows.runner.results import StepResult, load_yaml, read_kv_file

_SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"],
    "sh": ["sh", "-e"],
    "python": ["python"],
}


class StepFailed(Exception):
    """A step (a mapped action, a composite's input handling) failed with this message."""


@dataclass
class Scope:
    """The step list being run: the job's, or one composite action's (its own steps and inputs)."""

    inputs: dict[str, Any]
    action_path: Path | None = None
    steps: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


@dataclass
class Job:
    """The state of one job on a fresh runner (see runner/image.py)."""

    name: str
    root: Path
    image: RunnerImage
    engine: Expressions
    github: dict[str, Any]
    secrets: dict[str, str]
    vars: dict[str, str]
    needs: dict[str, Any]
    artifacts: Path
    cache: Path | None
    repository: Path | None
    deadline: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    post: list[Callable[[Job], None]] = field(default_factory=list)
    cancelled: bool = False
    _count: int = 0

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.workspace = self.root / "work"
        self.temp = self.root / "temp"
        self.tool_cache = self.root / "toolcache"
        for d in (self.home, self.workspace, self.temp, self.tool_cache):
            d.mkdir(parents=True, exist_ok=True)
        self.env_file = self.root / "env"
        self.path_file = self.root / "path"
        self.env_file.touch()
        self.path_file.touch()
        self.github = {**self.github, "workspace": str(self.workspace), "job": self.name}

    # ------------------------------------------------------------------ contexts and environment

    def status(self, scope: Scope) -> Status:
        if self.cancelled:
            return "cancelled"
        return "failure" if scope.failed else "success"

    def contexts(self, scope: Scope, env: Mapping[str, str]) -> dict[str, Any]:
        github = dict(self.github)
        if scope.action_path is not None:
            github["action_path"] = str(scope.action_path)
        return {
            "github": github,
            "inputs": scope.inputs,
            "secrets": self.secrets if scope.action_path is None else {},
            "vars": self.vars,
            "env": {**read_kv_file(self.env_file), **env},
            "job": {"status": self.status(scope)},
            "steps": scope.steps,
            "runner": {
                "os": "Linux",
                "arch": "X64",
                "name": "local",
                "temp": str(self.temp),
                "tool_cache": str(self.tool_cache),
            },
            "needs": self.needs,
            "strategy": {},
            "matrix": {},
        }

    def process_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The image's variables, then GITHUB_ENV, then the env context, then the runner's own."""
        extra_path = [p for p in self.path_file.read_text(encoding="utf-8").splitlines() if p]
        environ = {**self.image.env, "HOME": str(self.home), **read_kv_file(self.env_file), **env}
        # GITHUB_PATH entries are prepended, the newest first.
        environ["PATH"] = os.pathsep.join([*reversed(extra_path), *self.image.path])
        environ.update(
            CI="true",
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(self.workspace),
            GITHUB_ENV=str(self.env_file),
            GITHUB_PATH=str(self.path_file),
            GITHUB_ACTOR=str(self.github["actor"]),
            GITHUB_REPOSITORY=str(self.github["repository"]),
            GITHUB_RUN_ID=str(self.github["run_id"]),
            GITHUB_RUN_ATTEMPT=str(self.github["run_attempt"]),
            GITHUB_WORKFLOW_REF=str(self.github["workflow_ref"]),
            GITHUB_SHA=str(self.github.get("sha", "")),
            GITHUB_JOB=self.name,
            RUNNER_TEMP=str(self.temp),
            RUNNER_TOOL_CACHE=str(self.tool_cache),
            RUNNER_OS="Linux",
            RUNNER_ARCH="X64",
        )
        return environ

    def add_path(self, directory: Path) -> None:
        with self.path_file.open("a", encoding="utf-8") as fh:
            fh.write(f"{directory}\n")

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    # ------------------------------------------------------------------------------------ steps

    def run_steps(
        self,
        steps: list[dict[str, Any]],
        scope: Scope,
        *,
        shell: str | None,
        only: Collection[str] | None = None,
        skip: Collection[str] = (),
    ) -> None:
        for n, step in enumerate(steps):
            name = str(step.get("id") or step.get("name") or f"step-{n + 1}")
            if (only is not None and name not in only) or name in skip:
                self.results.append(StepResult(name=name, ran=False))
                continue
            self._step(name, step, scope, shell)

    def _step(self, name: str, step: dict[str, Any], scope: Scope, shell: str | None) -> None:
        try:
            env = {**self.env}
            contexts = self.contexts(scope, env)
            wanted = self.engine.condition(step.get("if", "success()"), contexts, self.status(scope))
        except ExpressionError as e:
            self._record(name, scope, step, StepResult(name=name, ran=True, returncode=1, stderr=f"{e}\n"))
            return
        if not wanted:
            self.results.append(StepResult(name=name, ran=False))
            if "id" in step:
                scope.steps[str(step["id"])] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            return
        try:
            for k, v in (step.get("env") or {}).items():
                env[str(k)] = self.engine.string(v, self.contexts(scope, env), self.status(scope))
            contexts = self.contexts(scope, env)
            if "run" in step:
                result = self._run(name, step, scope, env, contexts, shell)
            else:
                result = self._uses(name, step, scope, env, contexts)
        except (ExpressionError, StepFailed, LookupError) as e:
            result = StepResult(name=name, ran=True, returncode=1, stderr=f"{e}\n")
        self._record(name, scope, step, result)

    def _record(self, name: str, scope: Scope, step: dict[str, Any], result: StepResult) -> None:
        result.outcome = "success" if result.returncode == 0 else "failure"
        result.conclusion = result.outcome
        if result.outcome == "failure":
            tolerate = step.get("continue-on-error", False)
            if isinstance(tolerate, str):
                tolerate = self.engine.value(tolerate, self.contexts(scope, self.env))
            if tolerate in (True, "true"):
                result.conclusion = "success"
            else:
                scope.failed = True
        self.results.append(result)
        if "id" in step:
            scope.steps[str(step["id"])] = {
                "outputs": result.outputs,
                "outcome": result.outcome,
                "conclusion": result.conclusion,
            }

    def _timeout(self, step: dict[str, Any], contexts: dict[str, Any]) -> float | None:
        limits = [t for t in (self.remaining(),) if t is not None]
        if "timeout-minutes" in step:
            limits.append(float(self.engine.value(step["timeout-minutes"], contexts)) * 60)
        return min(limits) if limits else None

    def _run(
        self,
        name: str,
        step: dict[str, Any],
        scope: Scope,
        env: dict[str, str],
        contexts: dict[str, Any],
        shell: str | None,
    ) -> StepResult:
        self._count += 1
        output = self.root / f"output-{self._count}"
        summary = self.root / f"summary-{self._count}"
        output.touch()
        summary.touch()
        chosen = str(step.get("shell") or shell or "")
        if not chosen:
            if scope.action_path is not None:
                raise StepFailed(f"step {name}: a composite action's run step needs shell:")
            chosen = "bash"
        if chosen not in _SHELLS:
            raise StepFailed(f"step {name}: shell {chosen!r} is not one the local runner has")
        script = self.root / f"step-{self._count}.sh"
        script.write_text(self.engine.string(step["run"], contexts, self.status(scope)), encoding="utf-8")
        environ = self.process_env(env)
        environ.update(GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary))
        if scope.action_path is not None:
            environ["GITHUB_ACTION_PATH"] = str(scope.action_path)
        where = self.workspace / self.engine.string(step.get("working-directory") or ".", contexts)
        timeout = self._timeout(step, contexts)
        try:
            done = subprocess.run(
                [*_SHELLS[chosen], str(script)],
                cwd=where,
                env=environ,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            code, out = 124, _text(e.stdout)
            err = _text(e.stderr) + f"##[error]step {name} ran past its time limit ({timeout:.0f} s)\n"
            if self.remaining() == 0.0:
                self.cancelled = True
        return StepResult(
            name=name,
            ran=True,
            returncode=code,
            stdout=out,
            stderr=err,
            outputs=read_kv_file(output),
            summary=summary.read_text(encoding="utf-8"),
        )

    def _uses(
        self, name: str, step: dict[str, Any], scope: Scope, env: dict[str, str], contexts: dict[str, Any]
    ) -> StepResult:
        uses = str(step["uses"])
        given = {
            str(k): self.engine.string(v, contexts, self.status(scope))
            for k, v in (step.get("with") or {}).items()
        }
        if uses.startswith("./"):
            return self._composite(name, self.workspace / uses, given, env)
        from tests.workflows.runner.remote import run_mapped

        return StepResult(name=name, ran=True, outputs=run_mapped(self, uses, given))

    def action_scope(
        self, action: dict[str, Any], path: Path, given: dict[str, str], env: dict[str, str]
    ) -> Scope:
        """A composite action's scope: declared inputs from ``with:`` (case-insensitive), else defaults."""
        declared = {str(k).lower(): (str(k), v or {}) for k, v in (action.get("inputs") or {}).items()}
        unexpected = sorted(k for k in given if k.lower() not in declared)
        if unexpected:
            # GitHub warns and runs on: an undeclared input simply never reaches the action.
            self.warnings.append(f"Unexpected input(s) {unexpected}, valid inputs are {sorted(declared)}")
        inner = Scope(inputs={}, action_path=path)
        lowered = {k.lower(): v for k, v in given.items()}
        for key, (declared_name, spec) in declared.items():
            if key in lowered:
                inner.inputs[declared_name] = lowered[key]
            elif "default" in spec:
                inner.inputs[declared_name] = self.engine.string(spec["default"], self.contexts(inner, env))
            elif spec.get("required"):
                self.warnings.append(f"Input required and not supplied: {declared_name}")
        return inner

    def action_outputs(self, action: dict[str, Any], scope: Scope, env: dict[str, str]) -> dict[str, str]:
        contexts = self.contexts(scope, env)
        return {
            str(k): self.engine.string((v or {}).get("value", ""), contexts)
            for k, v in (action.get("outputs") or {}).items()
        }

    def _composite(self, name: str, path: Path, given: dict[str, str], env: dict[str, str]) -> StepResult:
        found = [p for p in (path / "action.yml", path / "action.yaml") if p.is_file()]
        if not found:
            raise StepFailed(f"step {name}: no action.yml at {path} (is the repository checked out?)")
        action = load_yaml(found[0])
        runs = action.get("runs") or {}
        if runs.get("using") != "composite":
            raise StepFailed(f"step {name}: only composite actions run locally, not {runs.get('using')!r}")
        inner = self.action_scope(action, path, given, env)
        start = len(self.results)
        self.run_steps(list(runs.get("steps") or []), inner, shell=None)
        inner_results = self.results[start:]
        del self.results[start:]
        outputs = self.action_outputs(action, inner, env)
        return StepResult(
            name=name,
            ran=True,
            returncode=1 if inner.failed else 0,
            stdout="".join(s.stdout for s in inner_results),
            stderr="".join(s.stderr for s in inner_results),
            outputs=outputs,
            summary="".join(s.summary for s in inner_results),
            steps=inner_results,
        )


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)
