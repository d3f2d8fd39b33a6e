"""The local Actions runner keeps GitHub's semantics: expressions, ``if:``, outputs, clean jobs, mappings.

Small workflows, committed to a throwaway repository, run through tests/workflows/runner; each
test proves one behaviour GitHub documents, so the release workflow's tests can trust the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflows.repos import caller_repository, commit_repository
from tests.workflows.runner import (
    ExpressionError,
    Expressions,
    RunnerImage,
    RunResult,
    WorkflowRunner,
    load_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
SETUP_PYTHON = "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"
CACHE = "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684"
UPLOAD = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
DOWNLOAD = "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093"


@pytest.fixture(scope="module")
def engine() -> Any:
    found = Expressions()
    yield found
    found.close()


def _run(tmp_path: Path, jobs: dict[str, Any], files: dict[str, str] | None = None, **kw: Any) -> RunResult:
    repo = commit_repository(tmp_path / "repo", {"README.md": "caller\n", **(files or {})})
    with WorkflowRunner(tmp_path / "runner", image=RunnerImage.bare(), repository=repo, **kw) as runner:
        return runner.run_inline({"on": "push", "jobs": jobs})


def _job(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"runs-on": "ubuntu-latest", "steps": list(steps), **extra}


def _ran(result: RunResult, job: str) -> list[str]:
    return [s.name for s in result.jobs[job].steps if s.ran]


# ------------------------------------------------------------------------------------ expressions


def test_expressions_are_githubs_functions_coercions_and_null_for_a_missing_property(engine: Any) -> None:
    ctx = {"inputs": {"runner": '["self-hosted", "gpu"]', "n": 3}, "steps": {}}
    runs_on = "${{ startsWith(inputs.runner, '[') && fromJSON(inputs.runner) || inputs.runner }}"
    assert engine.value(runs_on, ctx) == ["self-hosted", "gpu"]
    assert engine.value(runs_on, {"inputs": {"runner": "ubuntu-latest"}}) == "ubuntu-latest"
    assert engine.value("${{ format('{0}-{1}', inputs.n, true) }}", ctx) == "3-true"
    assert engine.value("${{ inputs.n == '3' }}", ctx) is True
    # A typo is null (an empty string), not an error: what the planted-break runs rely on.
    assert engine.string("v=${{ steps.relase.outputs.digest }}.", ctx) == "v=."
    with pytest.raises(ExpressionError, match="Unrecognized function: 'hashFiles'"):
        engine.value("${{ hashFiles('x') }}", ctx)
    with pytest.raises(ExpressionError):
        engine.value("${{ inputs.n ) }}", ctx)


def test_the_release_jobs_runs_on_and_timeout_are_evaluated_from_its_inputs(tmp_path: Path) -> None:
    repo = caller_repository(tmp_path / "repo")
    inputs = {"contract": "c.yaml", "to": "oci://h/r:t", "runner": '["self-hosted", "gpu"]'}
    with WorkflowRunner(tmp_path / "runner", image=RunnerImage.bare(), repository=repo) as runner:
        listed = runner.call(".github/workflows/release.yml", inputs=inputs, only={"release": set()})
        plain = runner.call(
            ".github/workflows/release.yml",
            inputs={"contract": "c.yaml", "to": "oci://h/r:t", "timeout-minutes": 30},
            only={"release": set()},
        )
    assert listed.jobs["release"].runs_on == ["self-hosted", "gpu"]
    assert listed.jobs["release"].timeout_minutes == 120
    assert plain.jobs["release"].runs_on == "ubuntu-latest"
    assert plain.jobs["release"].timeout_minutes == 30
    # No step ran, so every output mapping reads a missing step: empty, as on GitHub.
    assert listed.outputs == {"released": "", "digest": "", "exit-code": ""}


# ------------------------------------------------------------------------------------------- if:


def test_step_conditions_follow_the_jobs_status(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        {
            "j": _job(
                {"id": "ok", "run": "echo fine"},
                {"id": "tolerated", "run": "exit 3", "continue-on-error": "true"},
                {"id": "after-tolerated", "run": "true"},
                {"id": "boom", "run": "exit 4"},
                {"id": "default", "run": "true"},
                {"id": "success", "if": "success()", "run": "true"},
                {"id": "failure", "if": "${{ failure() }}", "run": "true"},
                {"id": "always", "if": "always()", "run": "true"},
                {"id": "cancelled", "if": "cancelled()", "run": "true"},
                {"id": "plain", "if": "github.actor == 'octocat'", "run": "true"},
                {"id": "outcomes", "if": "always() && steps.tolerated.outcome == 'failure'", "run": "true"},
            )
        },
    )
    job = result.jobs["j"]
    assert _ran(result, "j") == [
        "ok",
        "tolerated",
        "after-tolerated",
        "boom",
        "failure",
        "always",
        "outcomes",
    ]
    assert job.step("tolerated").outcome == "failure" and job.step("tolerated").conclusion == "success"
    assert job.result == "failure"


def test_a_job_past_its_timeout_is_cancelled_and_only_always_or_cancelled_steps_run(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        {
            "slow": _job(
                {"id": "sleep", "run": "sleep 20"},
                {"id": "default", "run": "true"},
                {"id": "failure", "if": "failure()", "run": "true"},
                {"id": "cancelled", "if": "cancelled()", "run": "true"},
                {"id": "always", "if": "always()", "run": "true"},
                **{"timeout-minutes": 0.02},
            )
        },
    )
    assert result.jobs["slow"].result == "cancelled"
    assert _ran(result, "slow") == ["sleep", "cancelled", "always"]


def test_job_conditions_see_needs_results_and_outputs(tmp_path: Path) -> None:
    produce = _job(
        {"id": "out", "run": 'echo "digest=sha256:abc" >> "$GITHUB_OUTPUT"; exit 1'},
        outputs={"digest": "${{ steps.out.outputs.digest }}", "missing": "${{ steps.nope.outputs.x }}"},
    )
    report = _job(
        {
            "id": "show",
            "env": {"D": "${{ needs.produce.outputs.digest }}", "R": "${{ needs.produce.result }}"},
            "run": 'test "$D" = sha256:abc && test "$R" = failure',
        },
        needs="produce",
        **{"if": "always()"},
    )
    result = _run(
        tmp_path, {"produce": produce, "dependent": _job({"run": "true"}, needs="produce"), "report": report}
    )
    assert result.jobs["produce"].result == "failure"
    # Outputs are evaluated even for a failed job; a mapping to a missing step is empty.
    assert result.jobs["produce"].outputs == {"digest": "sha256:abc", "missing": ""}
    assert result.jobs["dependent"].result == "skipped"
    assert result.jobs["report"].result == "success", result.log


# ------------------------------------------------------------------------- reusable and composite

_CALLED = {
    "on": {
        "workflow_call": {
            "inputs": {
                "name": {"type": "string", "required": True},
                "count": {"type": "number", "default": 2},
                "loud": {"type": "boolean", "default": False},
            },
            "secrets": {"TOKEN": {"required": False}},
            "outputs": {"greeting": {"value": "${{ jobs.greet.outputs.greeting }}"}},
        }
    },
    "jobs": {
        "greet": _job(
            {
                "id": "say",
                "env": {
                    "NAME": "${{ inputs.name }}",
                    "TWICE": "${{ inputs.count == 3 && 'three' || inputs.count }}",
                    "LOUD": "${{ inputs.loud }}",
                    "TOKEN": "${{ secrets.TOKEN }}",
                },
                "run": 'echo "greeting=hi $NAME $TWICE $LOUD ${TOKEN:-no-token}" >> "$GITHUB_OUTPUT"',
            },
            outputs={"greeting": "${{ steps.say.outputs.greeting }}"},
        )
    },
}


def _caller(with_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "call": {"uses": "./.github/workflows/called.yml", "with": with_, **extra},
        "use": _job(
            {
                "env": {"G": "${{ needs.call.outputs.greeting }}"},
                "run": 'echo "$G" > "$RUNNER_TEMP/g"; echo "$G"',
            },
            needs="call",
        ),
    }


def test_a_reusable_workflows_outputs_reach_the_caller_through_its_job_outputs(tmp_path: Path) -> None:
    files = {".github/workflows/called.yml": yaml.safe_dump(_CALLED)}
    result = _run(
        tmp_path,
        _caller({"name": "ada", "count": 3, "loud": True}, secrets="inherit"),
        files,
        secrets={"TOKEN": "t0k"},
    )
    assert result.succeeded, result.log
    assert result.jobs["call"].outputs == {"greeting": "hi ada three true t0k"}
    assert "call/greet" in result.jobs
    assert result.jobs["use"].step("step-1").stdout == "hi ada three true t0k\n"


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ({"name": "ada", "nmae": "x"}, "Invalid input(s) ['nmae']: not defined in the referenced workflow"),
        ({"count": 1}, "Input required and not supplied: name"),
        ({"name": "ada", "loud": "yes"}, "input loud: 'yes' is not a boolean"),
    ],
)
def test_a_call_with_undeclared_missing_or_mistyped_inputs_fails_the_caller_job(
    tmp_path: Path, with_: dict[str, Any], message: str
) -> None:
    result = _run(tmp_path, _caller(with_), {".github/workflows/called.yml": yaml.safe_dump(_CALLED)})
    assert result.jobs["call"].result == "failure"
    assert message in result.jobs["call"].log
    assert result.jobs["use"].result == "skipped"


_ACTION = {
    "name": "greet",
    "description": "a local composite action",
    "inputs": {"who": {"required": True}, "punct": {"default": "!"}, "shout": {"default": "false"}},
    "outputs": {"text": {"value": "${{ steps.say.outputs.text }}"}},
    "runs": {
        "using": "composite",
        "steps": [
            {
                "id": "say",
                "shell": "bash",
                "env": {"WHO": "${{ inputs.who }}", "P": "${{ inputs.punct }}"},
                "run": 'echo "text=hello $WHO$P from $(basename "$GITHUB_ACTION_PATH")" >> "$GITHUB_OUTPUT"',
            },
            {"id": "loud", "if": "inputs.shout == 'true'", "shell": "bash", "run": "echo LOUD"},
        ],
    },
}


def test_a_local_composite_action_runs_its_own_steps_with_its_inputs_and_outputs(tmp_path: Path) -> None:
    files = {".github/actions/greet/action.yml": yaml.safe_dump(_ACTION)}
    checkout = {"uses": CHECKOUT, "with": {"persist-credentials": False}}
    result = _run(
        tmp_path,
        {
            "j": _job(
                checkout,
                {
                    "id": "g",
                    "uses": "./.github/actions/greet",
                    "with": {"who": "${{ github.actor }}", "wat": 1},
                },
                {
                    "env": {"T": "${{ steps.g.outputs.text }}"},
                    "run": 'test "$T" = "hello octocat! from greet"',
                },
            )
        },
        files,
    )
    job = result.jobs["j"]
    assert job.result == "success", job.log
    assert [s.name for s in job.step("g").steps if s.ran] == ["say"]
    assert "Unexpected input(s) ['wat'], valid inputs are ['punct', 'shout', 'who']" in job.warnings[0]


def test_a_local_action_needs_the_repository_checked_out_first(tmp_path: Path) -> None:
    files = {".github/actions/greet/action.yml": yaml.safe_dump(_ACTION)}
    result = _run(
        tmp_path, {"j": _job({"id": "g", "uses": "./.github/actions/greet", "with": {"who": "x"}})}, files
    )
    assert result.jobs["j"].result == "failure"
    assert "no action.yml" in result.jobs["j"].step("g").stderr


# ----------------------------------------------------------------------------------- clean jobs


def test_every_job_starts_from_a_clean_environment(tmp_path: Path) -> None:
    dump = 'env | sort > "$RUNNER_TEMP/env"; pwd; echo "$HOME"; ls -A'
    first = _job(
        {"run": 'echo LEAK=1 >> "$GITHUB_ENV"; echo /leak >> "$GITHUB_PATH"; touch left-behind'},
        {"id": "dump", "run": dump},
    )
    second = _job({"id": "dump", "run": dump}, needs="first")
    result = _run(tmp_path, {"first": first, "second": second})
    assert result.succeeded, result.log
    one, two = (result.jobs[j].step("dump").stdout.splitlines() for j in ("first", "second"))
    assert one[0] != two[0] and one[1] != two[1]  # workspace, HOME
    assert "left-behind" in one[2:] and two[2:] == []
    env_two = (Path(two[0]).parent / "temp" / "env").read_text()
    assert "LEAK=" not in env_two and "/leak" not in env_two
    for inherited in ("PIP_FIND_LINKS", "VIRTUAL_ENV", "GATE_HOME", "UV_CACHE_DIR", "PYTHONPATH"):
        assert f"\n{inherited}=" not in "\n" + env_two
    path = next(line for line in env_two.splitlines() if line.startswith("PATH="))
    assert path == "PATH=/usr/local/bin:/usr/bin:/bin"


# --------------------------------------------------------------------------------------- mappings


def test_checkout_is_a_clean_clone_of_the_runs_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit_repository(repo, {"tracked.txt": "one\n"})
    (repo / "untracked.txt").write_text("not committed\n")
    steps = (
        {"run": "touch stale"},
        {"id": "co", "uses": CHECKOUT, "with": {"persist-credentials": False}},
        {"id": "ls", "run": "ls -A; git status --porcelain; git rev-parse HEAD"},
    )
    with WorkflowRunner(tmp_path / "runner", image=RunnerImage.bare(), repository=repo) as runner:
        result = runner.run_inline({"on": "push", "jobs": {"j": _job(*steps)}})
        sha = runner.github["sha"]
    job = result.jobs["j"]
    assert job.result == "success", job.log
    assert job.step("ls").stdout.splitlines() == [".git", "tracked.txt", sha]
    assert job.step("co").outputs == {"ref": sha, "commit": sha}


def test_setup_python_puts_the_named_interpreters_on_path_and_the_last_is_python(tmp_path: Path) -> None:
    setup = {"uses": SETUP_PYTHON, "with": {"python-version": "3.12\n3.11\n"}}
    probe = {"id": "v", "run": "python --version; python3.12 --version; command -v python3.11"}
    result = _run(tmp_path, {"j": _job(setup, probe)})
    out = result.jobs["j"].step("v").stdout.splitlines()
    assert out[0].startswith("Python 3.11.") and out[1].startswith("Python 3.12.")
    assert out[2].endswith("/toolcache/python/bin/python3.11")
    missing = RunnerImage(interpreters={"3.11": "/usr/bin/python3.11"})
    repo = commit_repository(tmp_path / "repo2")
    with WorkflowRunner(tmp_path / "runner2", image=missing, repository=repo) as runner:
        failed = runner.run_inline({"on": "push", "jobs": {"j": _job({"id": "s", **setup})}})
    assert "setup-python: the runner image has no Python 3.12" in failed.jobs["j"].step("s").stderr


def test_cache_restores_by_key_saves_after_success_and_a_cold_cache_restores_nothing(tmp_path: Path) -> None:
    cache = {"id": "c", "uses": CACHE, "with": {"path": "~/.cache/thing", "key": "k-1", "restore-keys": "k-"}}
    write = {"run": "mkdir -p ~/.cache/thing && echo built > ~/.cache/thing/file"}
    read = {"id": "r", "run": "cat ~/.cache/thing/file"}
    store = tmp_path / "cache-store"
    store.mkdir()
    warm = _run(
        tmp_path / "a", {"fill": _job(cache, write), "use": _job(cache, read, needs="fill")}, cache=store
    )
    assert warm.jobs["fill"].step("c").outputs == {"cache-hit": "false"}
    assert warm.jobs["use"].step("c").outputs == {"cache-hit": "true"}
    assert warm.jobs["use"].step("r").stdout == "built\n"
    cold = _run(tmp_path / "b", {"fill": _job(cache, write), "use": _job(cache, read, needs="fill")})
    assert cold.jobs["use"].step("c").outputs == {"cache-hit": "false"}
    assert cold.jobs["use"].result == "failure"


def test_artifacts_are_copied_between_jobs_and_a_missing_one_fails_the_download(tmp_path: Path) -> None:
    up = {"uses": UPLOAD, "with": {"name": "out", "path": "gate-out", "if-no-files-found": "error"}}
    jobs = {
        "make": _job({"run": "mkdir -p gate-out/sub && echo v > gate-out/sub/f"}, up),
        "take": _job(
            {"uses": DOWNLOAD, "with": {"name": "out", "path": "got"}},
            {"id": "c", "run": "cat got/sub/f"},
            needs="make",
        ),
        "none": _job({"id": "u", **up}),
        "wrong": _job({"id": "d", "uses": DOWNLOAD, "with": {"name": "other"}}, needs="make"),
    }
    result = _run(tmp_path, jobs)
    assert result.jobs["take"].step("c").stdout == "v\n"
    assert "no files were found with the provided path: gate-out" in result.jobs["none"].step("u").stderr
    assert "Artifact not found for name: other" in result.jobs["wrong"].step("d").stderr


def test_an_unmapped_action_or_an_unmapped_input_fails_the_step_instead_of_being_skipped(
    tmp_path: Path,
) -> None:
    jobs = {
        "a": _job({"id": "s", "uses": "actions/setup-node@1d0ff469b7ec7b3cb9d8673fde0c81c44821de2a"}),
        "b": _job({"id": "s", "uses": CHECKOUT, "with": {"fetch-depth": 0}}),
    }
    result = _run(tmp_path, jobs)
    assert (
        "actions/setup-node@1d0ff469b7ec7b3cb9d8673fde0c81c44821de2a: no local equivalent"
        in result.jobs["a"].step("s").stderr
    )
    assert (
        "actions/checkout: input(s) ['fetch-depth'] have no local equivalent"
        in result.jobs["b"].step("s").stderr
    )


def test_every_remote_action_in_gates_workflows_and_action_is_mapped() -> None:
    from tests.workflows.runner.remote import _MAPPINGS

    used: set[str] = set()
    for path in [
        *(ROOT / ".github" / "workflows").glob("*.yml"),
        ROOT / ".github" / "actions" / "verify-bundle" / "action.yml",
    ]:
        data = load_yaml(path)
        steps = [s for j in (data.get("jobs") or {}).values() for s in j.get("steps", [])]
        steps += (data.get("runs") or {}).get("steps", [])
        used |= {
            str(s["uses"]).split("@")[0] for s in steps if "uses" in s and not str(s["uses"]).startswith("./")
        }
    assert used <= set(_MAPPINGS), used - set(_MAPPINGS)
