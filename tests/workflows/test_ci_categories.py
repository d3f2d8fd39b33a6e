"""The feature tests docs/workflows.md says the CI log shows exist and run in the default set.

Issue 16's first Done-when line names six categories (approval, Ray, crash-restart,
workflow-release, per-toolkit, baseline) whose tests must pass in the landed commit's CI. The
doc lists their node ids; this test collects every one of them with pytest, so a renamed, removed
or opt-in test breaks here instead of silently dropping out of the CI log.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = ("approval", "Ray", "crash-restart", "workflow-release", "per-toolkit", "baseline")


def _listed() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "workflows.md").read_text(encoding="utf-8")
    section = text.split("### What the CI log shows", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    found: dict[str, list[str]] = {}
    category = ""
    for line in section.splitlines():
        head = re.match(r"- ([A-Za-z-]+): ", line)
        if head:
            category = head.group(1)
        found.setdefault(category, []).extend(re.findall(r"`(tests/[^`]+)`", line))
    return found


def test_each_ci_category_names_tests_that_are_collected_in_the_default_set() -> None:
    listed = _listed()
    assert tuple(listed) == CATEGORIES
    ids = [node for nodes in listed.values() for node in nodes]
    assert all(nodes for nodes in listed.values())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = {line.split("[")[0] for line in done.stdout.splitlines() if "::" in line}
    assert set(ids) <= collected, set(ids) - collected
    # No marker or hook deselects them: the default run collects exactly what was asked for.
    assert "deselected" not in done.stdout
