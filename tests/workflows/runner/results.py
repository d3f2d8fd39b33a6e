"""What a local run leaves: step, job and workflow results, and the runner's file formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Result = Literal["success", "failure", "cancelled", "skipped"]


@dataclass
class StepResult:
    """One step: ``outcome`` before ``continue-on-error``, ``conclusion`` after it."""

    name: str
    ran: bool
    outcome: Result = "skipped"
    conclusion: Result = "skipped"
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    #: A composite action's own steps.
    steps: list[StepResult] = field(default_factory=list)


@dataclass
class JobResult:
    """One job: its steps in order, its evaluated ``runs-on``, ``outputs`` and result."""

    name: str
    result: Result
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    runs_on: Any = None
    timeout_minutes: float | None = None
    warnings: list[str] = field(default_factory=list)
    #: The job's runner folder: ``home``, ``work`` (the workspace), ``temp``, ``env`` (GITHUB_ENV).
    root: Path | None = None

    @property
    def succeeded(self) -> bool:
        return self.result == "success"

    @property
    def workspace(self) -> Path:
        assert self.root is not None
        return self.root / "work"

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def log(self) -> str:
        notes = "".join(f"##[warning]{w}\n" for w in self.warnings)
        return notes + "".join(s.stdout + s.stderr for s in self.steps)

    def step(self, step_id_or_name: str) -> StepResult:
        for s in self.steps:
            if s.name == step_id_or_name:
                return s
        raise KeyError(step_id_or_name)


@dataclass
class RunResult:
    """A workflow run: every job (a called workflow's as ``CALLER/JOB``) and the ``workflow_call`` outputs."""

    jobs: dict[str, JobResult]
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(j.result in ("success", "skipped") for j in self.jobs.values())

    @property
    def log(self) -> str:
        return "".join(f"=== job {name}: {j.result}\n{j.log}" for name, j in self.jobs.items())


class _NoBoolLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 booleans, so ``on:`` is a key named "on" as GitHub reads it."""


_NoBoolLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_text(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=_NoBoolLoader)
    assert isinstance(data, dict)
    return data


def load_yaml(path: Path) -> dict[str, Any]:
    """Load a workflow or action file (``on:`` stays the string key "on")."""
    return load_yaml_text(path.read_text(encoding="utf-8"))


def read_kv_file(path: Path) -> dict[str, str]:
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


def workflow_call_defaults(workflow: dict[str, Any]) -> dict[str, Any]:
    """The defaults of a reusable workflow's ``workflow_call`` inputs."""
    inputs = workflow["on"]["workflow_call"]["inputs"]
    return {k: v.get("default", "") for k, v in inputs.items()}


def action_defaults(action: dict[str, Any]) -> dict[str, Any]:
    """The defaults of a composite action's inputs."""
    return {k: v.get("default", "") for k, v in action["inputs"].items()}
