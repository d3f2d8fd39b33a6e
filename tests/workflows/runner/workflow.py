"""A workflow run: jobs in ``needs`` order, reusable workflow calls, job and ``workflow_call`` outputs.

Each job starts on a fresh runner (runner/image.py: new HOME, workspace, temp, tool cache, and
only the image's environment). A job's ``if:`` sees ``needs`` (``result``, ``outputs``);
without a status function it runs only when every needed job succeeded. ``runs-on`` and
``timeout-minutes`` are evaluated (the job is cancelled when its time runs out). A job with
``uses: ./.github/workflows/X.yml`` calls that workflow as GitHub does: ``with:`` checked
against the declared ``workflow_call`` inputs (unknown or missing required ones are an error,
types converted), declared secrets passed (or ``inherit``), the called jobs run, and the
``workflow_call`` outputs evaluated from their ``jobs`` context become the caller job's outputs.
Workflows and local actions are read from the run's repository at its commit, as GitHub reads
the caller's commit.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.workflows.runner.expressions import ExpressionError, Expressions, Status, as_string
from tests.workflows.runner.image import RunnerImage
from tests.workflows.runner.job import Job, Scope
from tests.workflows.runner.results import JobResult, Result, RunResult, StepResult, load_yaml, load_yaml_text

_GITHUB = {
    "actor": "octocat",
    "token": "ghs_local-test-token",
    "repository": "octo-org/adapters",
    "repository_owner": "octo-org",
    "run_id": "4242",
    "run_attempt": "1",
    "workflow_ref": "octo-org/adapters/.github/workflows/release.yml@refs/tags/v1",
    "ref": "refs/tags/v1",
    "ref_name": "v1",
    "event_name": "push",
}


class WorkflowError(Exception):
    """The run could not start a job as GitHub would refuse it (a bad call, an invalid value)."""


class WorkflowRunner:
    """Runs workflows of ``repository`` (a git repository; HEAD is the run's commit) under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        image: RunnerImage,
        repository: Path | None = None,
        github: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        vars: dict[str, str] | None = None,
        cache: Path | None = None,
    ) -> None:
        self.root = root
        self.image = image
        self.repository = repository
        self.secrets = dict(secrets or {})
        self.vars = dict(vars or {})
        self.cache = cache
        self.artifacts = root / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        sha = ""
        if repository is not None:
            sha = _git(repository, "rev-parse", "HEAD").strip()
        self.github: dict[str, Any] = {**_GITHUB, "sha": sha, **(github or {})}
        self.engine = Expressions()
        self._jobs = 0

    def __enter__(self) -> WorkflowRunner:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.engine.close()

    def read(self, path: str | Path) -> dict[str, Any]:
        """A workflow file of the repository at the run's commit (a ``Path``: that file)."""
        if isinstance(path, Path):
            return load_yaml(path)
        assert self.repository is not None, "this runner has no repository"
        return load_yaml_text(
            _git(self.repository, "show", f"{self.github['sha']}:{path.removeprefix('./')}")
        )

    # --------------------------------------------------------------------------------- workflows

    def run_inline(self, workflow: dict[str, Any]) -> RunResult:
        """Run a workflow given as data (a test's own caller, not committed to the repository)."""
        return self._workflow(workflow, inputs={}, secrets=self.secrets, prefix="")

    def run(
        self, path: str, *, jobs: set[str] | None = None, skip: dict[str, set[str]] | None = None
    ) -> RunResult:
        """Run the workflow at ``path`` for a push; ``jobs``: only these and what they need;
        ``skip`` (a test device): for a job (``CALLER/JOB`` inside a called workflow), step
        ids/names recorded as not run."""
        steps = {name: _Steps(skip=names) for name, names in (skip or {}).items()}
        return self._workflow(
            self.read(path), inputs={}, secrets=self.secrets, prefix="", wanted=jobs, steps=steps
        )

    def call(
        self,
        path: str | Path,
        *,
        inputs: dict[str, Any],
        secrets: dict[str, str] | None = None,
        only: dict[str, set[str]] | None = None,
    ) -> RunResult:
        """Call the reusable workflow at ``path`` as a caller's ``with:``/``secrets:`` would.

        ``only`` (a test device): for a job, the step ids/names to run; its other steps are
        recorded as not run.
        """
        workflow = self.read(path)
        typed = _call_inputs(workflow, dict(inputs))
        steps = {name: _Steps(only=names) for name, names in (only or {}).items()}
        return self._workflow(workflow, inputs=typed, secrets=dict(secrets or {}), prefix="", steps=steps)

    def _workflow(
        self,
        workflow: dict[str, Any],
        *,
        inputs: dict[str, Any],
        secrets: dict[str, str],
        prefix: str,
        wanted: set[str] | None = None,
        steps: dict[str, _Steps] | None = None,
    ) -> RunResult:
        jobs: dict[str, dict[str, Any]] = workflow["jobs"]
        selected = _with_needs(jobs, wanted) if wanted is not None else set(jobs)
        done: dict[str, JobResult] = {}
        every: dict[str, JobResult] = {}
        pending = [j for j in jobs if j in selected]
        while pending:
            ready = next(j for j in pending if set(_needs(jobs[j])) <= set(done))
            pending.remove(ready)
            result, nested = self._job(
                workflow, ready, jobs[ready], inputs, secrets, done, prefix, steps or {}
            )
            done[ready] = result
            every.update(nested)
            every[prefix + ready] = result
        outputs: dict[str, str] = {}
        call = (
            (workflow.get("on") or {}).get("workflow_call") if isinstance(workflow.get("on"), dict) else None
        )
        if isinstance(call, dict):
            contexts = {
                "github": self.github,
                "inputs": inputs,
                "vars": self.vars,
                "jobs": {n: {"result": r.result, "outputs": r.outputs} for n, r in done.items()},
            }
            for name, spec in (call.get("outputs") or {}).items():
                outputs[str(name)] = self.engine.string((spec or {}).get("value", ""), contexts)
        return RunResult(jobs=every, outputs=outputs)

    # -------------------------------------------------------------------------------------- jobs

    def _job(
        self,
        workflow: dict[str, Any],
        name: str,
        spec: dict[str, Any],
        inputs: dict[str, Any],
        secrets: dict[str, str],
        done: dict[str, JobResult],
        prefix: str,
        steps: dict[str, _Steps],
    ) -> tuple[JobResult, dict[str, JobResult]]:
        needs = {n: {"result": done[n].result, "outputs": done[n].outputs} for n in _needs(spec)}
        status: Status = "success" if all(done[n].result == "success" for n in needs) else "failure"
        contexts = {"github": self.github, "inputs": inputs, "vars": self.vars, "needs": needs}
        try:
            if not self.engine.condition(spec.get("if", "success()"), contexts, status):
                return JobResult(name=prefix + name, result="skipped"), {}
            if "uses" in spec:
                return self._reusable(name, spec, contexts, secrets, prefix, steps)
            chosen = steps.get(prefix + name, _Steps())
            return self._steps_job(workflow, name, spec, inputs, secrets, needs, prefix, chosen), {}
        except (ExpressionError, WorkflowError) as e:
            failed = StepResult(
                name="Set up job", ran=True, outcome="failure", conclusion="failure", returncode=1
            )
            failed.stderr = f"{e}\n"
            return JobResult(name=prefix + name, result="failure", steps=[failed]), {}

    def _reusable(
        self,
        name: str,
        spec: dict[str, Any],
        contexts: dict[str, Any],
        secrets: dict[str, str],
        prefix: str,
        steps: dict[str, _Steps],
    ) -> tuple[JobResult, dict[str, JobResult]]:
        uses = str(spec["uses"])
        if not uses.startswith("./"):
            raise WorkflowError(f"job {name}: only local reusable workflows (./...) run here, not {uses}")
        called = self.read(uses)
        given = {str(k): self.engine.value(v, contexts) for k, v in (spec.get("with") or {}).items()}
        typed = _call_inputs(called, given)
        declared = (called["on"]["workflow_call"].get("secrets") or {}).keys()
        if spec.get("secrets") == "inherit":
            passed = {k: v for k, v in secrets.items() if k in declared}
        else:
            with_secrets = {**contexts, "secrets": secrets}
            passed = {
                str(k): self.engine.string(v, with_secrets) for k, v in (spec.get("secrets") or {}).items()
            }
            unknown = sorted(set(passed) - set(declared))
            if unknown:
                raise WorkflowError(f"job {name}: secret(s) {unknown} are not declared by {uses}")
        run = self._workflow(called, inputs=typed, secrets=passed, prefix=f"{prefix}{name}/", steps=steps)
        results = [j.result for j in run.jobs.values()]
        result: Result = "success" if all(r in ("success", "skipped") for r in results) else "failure"
        return JobResult(name=prefix + name, result=result, outputs=run.outputs), run.jobs

    def action(self, path: Path, *, with_: dict[str, Any], only: set[str] | None = None) -> JobResult:
        """Run the composite action in directory ``path`` as a job of its own steps (``only``: a
        test device, the step ids to run), with ``with_`` as its inputs."""
        job = self._new_job("action", self.secrets, {})
        action = load_yaml(path / "action.yml")
        given = {str(k): as_string(v) for k, v in with_.items()}
        scope = job.action_scope(action, path, given, {})
        job.run_steps(list(action["runs"]["steps"]), scope, shell=None, only=only)
        result: Result = "failure" if scope.failed else "success"
        outputs = job.action_outputs(action, scope, {})
        return JobResult(
            name="action",
            result=result,
            steps=job.results,
            outputs=outputs,
            warnings=job.warnings,
            root=job.root,
        )

    def _new_job(self, name: str, secrets: dict[str, str], needs: dict[str, Any]) -> Job:
        self._jobs += 1
        return Job(
            name=name,
            root=self.root / f"job-{self._jobs:02d}-{name}",
            image=self.image,
            engine=self.engine,
            github=self.github,
            secrets=secrets,
            vars=self.vars,
            needs=needs,
            artifacts=self.artifacts,
            cache=self.cache,
            repository=self.repository,
        )

    def _steps_job(
        self,
        workflow: dict[str, Any],
        name: str,
        spec: dict[str, Any],
        inputs: dict[str, Any],
        secrets: dict[str, str],
        needs: dict[str, Any],
        prefix: str,
        chosen: _Steps,
    ) -> JobResult:
        job = self._new_job(name, secrets, needs)
        scope = Scope(inputs=inputs)
        contexts = job.contexts(scope, {})
        if "runs-on" not in spec:
            raise WorkflowError(f"job {name}: no runs-on")
        runs_on = self.engine.value(spec["runs-on"], contexts)
        if not runs_on or not isinstance(runs_on, (str, list)):
            raise WorkflowError(
                f"job {name}: runs-on evaluated to {runs_on!r}, not a label or a list of labels"
            )
        minutes = float(self.engine.value(spec.get("timeout-minutes", 360), contexts))
        job.deadline = time.monotonic() + minutes * 60
        for source in (workflow.get("env") or {}, spec.get("env") or {}):
            for k, v in source.items():
                job.env[str(k)] = self.engine.string(v, job.contexts(scope, job.env))
        shell = ((spec.get("defaults") or workflow.get("defaults") or {}).get("run") or {}).get("shell")
        job.run_steps(list(spec.get("steps") or []), scope, shell=shell, only=chosen.only, skip=chosen.skip)
        if job.cancelled:
            result: Result = "cancelled"
        else:
            result = "failure" if scope.failed else "success"
        if result == "success":
            for hook in reversed(job.post):
                hook(job)
        final = job.contexts(scope, job.env)
        outputs = {str(k): self.engine.string(v, final) for k, v in (spec.get("outputs") or {}).items()}
        return JobResult(
            name=prefix + name,
            result=result,
            steps=job.results,
            outputs=outputs,
            runs_on=runs_on,
            timeout_minutes=minutes,
            warnings=job.warnings,
            root=job.root,
        )


@dataclass(frozen=True)
class _Steps:
    """Which steps of a job run (a test device): ``only`` these, or all but ``skip``."""

    only: set[str] | None = None
    skip: set[str] = field(default_factory=set)


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else [str(n) for n in needs]


def _with_needs(jobs: dict[str, dict[str, Any]], wanted: set[str]) -> set[str]:
    selected: set[str] = set()
    stack = list(wanted)
    while stack:
        name = stack.pop()
        if name not in selected:
            selected.add(name)
            stack.extend(_needs(jobs[name]))
    return selected


def _call_inputs(workflow: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``with:`` of a call checked against the ``workflow_call`` inputs, with defaults and types."""
    declared: dict[str, Any] = workflow["on"]["workflow_call"].get("inputs") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise WorkflowError(f"Invalid input(s) {unknown}: not defined in the referenced workflow")
    typed: dict[str, Any] = {}
    for key, spec in declared.items():
        kind = spec.get("type", "string")
        if key in given:
            value = given[key]
        elif "default" in spec:
            value = spec["default"]
        elif spec.get("required"):
            raise WorkflowError(f"Input required and not supplied: {key}")
        else:
            value = {"string": "", "number": 0, "boolean": False}[kind]
        typed[key] = _typed(key, kind, value)
    return typed


def _typed(key: str, kind: str, value: Any) -> Any:
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value) in ("true", "false"):
            return str(value) == "true"
    elif kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            return int(number) if number.is_integer() else number
    elif kind == "string":
        return (
            value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        )
    raise WorkflowError(f"input {key}: {value!r} is not a {kind}")


def _git(repository: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WorkflowError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout
