"""Run the `run:` steps of a GitHub workflow job or composite action locally, as the runner would.

What the runner does and this reproduces: a fresh ``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY``
file per step (the job summary is their concatenation), ``GITHUB_ENV``/``GITHUB_PATH`` carried
to later steps, ``bash --noprofile --norc -eo pipefail`` for ``shell: bash``, the job stops at
the first failing step, and ``${{ }}`` expressions are evaluated from the inputs, step outputs,
``github`` and ``secrets`` contexts. ``uses:`` steps (checkout, setup-python, cache, artifacts)
cannot run here; they are recorded as skipped.

The expression evaluator only knows context references, string literals and ``||``; anything
else raises, so a workflow that grows an expression this file cannot evaluate fails the test
instead of being evaluated wrongly.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]


@dataclass
class StepResult:
    """What one step did."""

    name: str
    ran: bool
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


@dataclass
class JobResult:
    """What the job did: every step in order, the job summary and whether it succeeded."""

    steps: list[StepResult]

    @property
    def succeeded(self) -> bool:
        return all(s.returncode == 0 for s in self.steps if s.ran)

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def log(self) -> str:
        return "".join(s.stdout + s.stderr for s in self.steps)

    def step(self, step_id_or_name: str) -> StepResult:
        for s in self.steps:
            if s.name == step_id_or_name:
                return s
        raise KeyError(step_id_or_name)


def load_yaml(path: Path) -> dict[str, Any]:
    """Load a workflow or action file (``on:`` stays the string key "on")."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoBoolLoader)
    assert isinstance(data, dict)
    return data


class _NoBoolLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 booleans, so ``on:`` is a key named "on" as GitHub reads it."""


_NoBoolLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def evaluate(expression: str, contexts: Mapping[str, Any]) -> str:
    """Evaluate ``a || b || 'literal'``: the first operand that is not empty, as a string."""
    for operand in (o.strip() for o in expression.split("||")):
        if operand.startswith("'") and operand.endswith("'"):
            value: Any = operand[1:-1].replace("''", "'")
        elif _REF.match(operand):
            value = contexts
            for part in operand.split("."):
                value = value.get(part, "") if isinstance(value, Mapping) else ""
        else:
            raise ValueError(f"expression the local runner cannot evaluate: {expression!r}")
        if value not in ("", None, False):
            return str(value).lower() if isinstance(value, bool) else str(value)
    return ""


def substitute(text: str, contexts: Mapping[str, Any]) -> str:
    """Replace every ``${{ ... }}`` in ``text``."""
    return _EXPR.sub(lambda m: evaluate(m.group(1), contexts), text)


def _read_kv_file(path: Path) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT/GITHUB_ENV file (``k=v`` lines and ``k<<DELIM`` blocks)."""
    result: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            block: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                block.append(lines[i])
                i += 1
            result[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            result[key] = value
        i += 1
    return result


class LocalRunner:
    """Runs one job's (or one composite action's) steps in ``workspace``.

    ``environ`` is the base environment (PATH etc.); the GitHub variables are added on top.
    """

    def __init__(
        self,
        workspace: Path,
        *,
        environ: Mapping[str, str],
        github: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        timeout: float = 1800,
    ) -> None:
        self.workspace = workspace
        self.home = workspace.parent / "runner"
        self.temp = self.home / "temp"
        self.temp.mkdir(parents=True, exist_ok=True)
        self.env_file = self.home / "env"
        self.path_file = self.home / "path"
        self.env_file.touch()
        self.path_file.touch()
        self.base_env = dict(environ)
        self.github = {
            "actor": "octocat",
            "token": "ghs_local-test-token",
            "repository": "octo-org/adapters",
            "run_id": "4242",
            "run_attempt": "1",
            "workflow_ref": "octo-org/adapters/.github/workflows/release.yml@refs/tags/v1",
            **(github or {}),
        }
        self.secrets = dict(secrets or {})
        self.timeout = timeout
        self._count = 0

    def _environ(self) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(_read_kv_file(self.env_file))
        extra_path = [p for p in self.path_file.read_text(encoding="utf-8").splitlines() if p]
        # GITHUB_PATH entries are prepended, the newest first.
        env["PATH"] = os.pathsep.join([*reversed(extra_path), env.get("PATH", "")])
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(self.workspace),
                "GITHUB_ENV": str(self.env_file),
                "GITHUB_PATH": str(self.path_file),
                "GITHUB_ACTOR": self.github["actor"],
                "GITHUB_REPOSITORY": self.github["repository"],
                "GITHUB_RUN_ID": self.github["run_id"],
                "GITHUB_RUN_ATTEMPT": self.github["run_attempt"],
                "GITHUB_WORKFLOW_REF": self.github["workflow_ref"],
                "RUNNER_TEMP": str(self.temp),
                "RUNNER_OS": "Linux",
            }
        )
        return env

    def run_steps(
        self,
        steps: list[dict[str, Any]],
        *,
        inputs: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        default_shell: str | None = None,
        only: set[str] | None = None,
    ) -> JobResult:
        """Run ``steps`` in order (``only``: the ids/names to run; others are skipped)."""
        contexts: dict[str, Any] = {
            "inputs": dict(inputs),
            "github": self.github,
            "secrets": self.secrets,
            "runner": {"temp": str(self.temp), "os": "Linux", "arch": "X64"},
            "steps": {},
        }
        job_env = {k: substitute(str(v), contexts) for k, v in (env or {}).items()}
        results: list[StepResult] = []
        for step in steps:
            name = str(step.get("id") or step.get("name"))
            if "run" not in step or (only is not None and name not in only):
                results.append(StepResult(name=name, ran=False))
                continue
            if "if" in step and str(step["if"]).strip() not in ("always()", "success()"):
                raise ValueError(f"step {name}: condition the local runner cannot evaluate: {step['if']!r}")
            if "${{" in step["run"]:
                raise ValueError(f"step {name}: an expression inside run: is a script-injection risk")
            self._count += 1
            output = self.home / f"output-{self._count}"
            summary = self.home / f"summary-{self._count}"
            output.touch()
            summary.touch()
            environ = self._environ()
            environ.update(job_env)
            environ.update({k: substitute(str(v), contexts) for k, v in (step.get("env") or {}).items()})
            environ["GITHUB_OUTPUT"] = str(output)
            environ["GITHUB_STEP_SUMMARY"] = str(summary)
            shell = step.get("shell") or default_shell or "bash"
            assert shell == "bash", f"step {name}: only bash steps run locally, not {shell}"
            script = self.home / f"step-{self._count}.sh"
            script.write_text(step["run"], encoding="utf-8")
            done = subprocess.run(
                [*_BASH, str(script)],
                cwd=self.workspace / str(step.get("working-directory") or "."),
                env=environ,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
            outputs = _read_kv_file(output)
            contexts["steps"][name] = {"outputs": outputs}
            results.append(
                StepResult(
                    name=name,
                    ran=True,
                    returncode=done.returncode,
                    stdout=done.stdout,
                    stderr=done.stderr,
                    outputs=outputs,
                    summary=summary.read_text(encoding="utf-8"),
                )
            )
            if done.returncode != 0:
                break
        return JobResult(steps=results)


def workflow_call_defaults(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of a reusable workflow's ``workflow_call`` inputs."""
    inputs = workflow["on"]["workflow_call"]["inputs"]
    return {k: v.get("default", "") for k, v in inputs.items()}


def action_defaults(action: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of a composite action's inputs."""
    return {k: v.get("default", "") for k, v in action["inputs"].items()}
