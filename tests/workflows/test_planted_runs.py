"""Breaks planted in a copy of the release workflow or the verify action make a run of them fail.

A caller's workflow (``CALLER``) calls the release workflow and uses the verify action, on the
local runner with GitHub's expression semantics. It stays cheap: the release is asked for a run
that does not exist, so the real job (checkout, setup-python, the release step, the artifact
upload under ``if: always()``; the install step is skipped, gate is preinstalled on the image)
ends in ``gate release`` refusing with exit 2 in a second, and the verify action checks a small
signed bundle in an OCI layout. The caller's own
steps assert what a serving team relies on: the job outputs (``needs.release.outputs``), the
artifact uploaded even though the release failed, and the action's ``verified`` output.

The unbroken copy passes; each planted break (a job-output mapping, an ``if:``, a composite
action's input) makes the caller's run fail where the break shows. The same breaks are also
caught statically (tests/workflows/test_github_tools.py); these runs show the runner would not
let them through either.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.workflows.repos import caller_repository, plant
from tests.workflows.runner import RunnerImage, RunResult, WorkflowRunner

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ".github/workflows/release.yml"
ACTION = ".github/actions/verify-bundle/action.yml"

CALLER = {
    "name": "release-caller",
    "on": "push",
    "jobs": {
        "release": {
            "uses": "./" + RELEASE,
            "with": {
                "run-dir": "runs/missing",
                "contract": "contracts/smollm2-vllm.yaml",
                "to": "oci://127.0.0.1:9/octo-org/capitals:v1",
                "sign-method": "key",
                "sign-key": "${{ vars.SIGN_KEY }}",
                "gate-path": "${{ vars.GATE_PATH }}",
            },
        },
        "report": {
            "needs": "release",
            "if": "always()",
            "runs-on": "ubuntu-latest",
            "steps": [
                {
                    "uses": "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093",
                    "with": {"name": "gate-release", "path": "gate-out"},
                },
                {
                    "id": "check",
                    "env": {
                        "RESULT": "${{ needs.release.result }}",
                        "EXIT_CODE": "${{ needs.release.outputs.exit-code }}",
                        "RELEASED": "${{ needs.release.outputs.released }}",
                    },
                    "run": 'test "$RESULT" = failure\n'
                    'test "$EXIT_CODE" = 2\n'
                    'test "$RELEASED" = false\n'
                    'grep -q "runs/missing has no run.json" gate-out/summary.md\n',
                },
            ],
        },
        "verify": {
            "runs-on": "ubuntu-latest",
            "steps": [
                {
                    "uses": "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
                    "with": {"persist-credentials": False},
                },
                {
                    "id": "verify",
                    "uses": "./.github/actions/verify-bundle",
                    "with": {
                        "ref": "${{ vars.BUNDLE }}",
                        "key": "${{ vars.PUBLIC_KEY }}",
                        "contract-digest": "${{ vars.CONTRACT_DIGEST }}",
                        "install": "false",
                    },
                },
                {
                    "id": "check",
                    "env": {"VERIFIED": "${{ steps.verify.outputs.verified }}"},
                    "run": 'test "$VERIFIED" = true\n',
                },
            ],
        },
    },
}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A signed bundle in an OCI layout, its public key and a signing key for the release input."""
    from gate.contract import Contract
    from gate.oci import parse_ref, publish
    from gate.resources import default_contract
    from gate.signing import generate_key
    from tests.fixtures.bundles import signed_release
    from tests.fixtures.serving import write_lora

    root = tmp_path_factory.mktemp("published")
    keys = root / "keys"
    generate_key(keys / "release.pem", keys / "release.pub.pem")
    adapter = write_lora(root / "adapter", layers=(0, 1))
    bundle = signed_release(root / "bundle", adapter, None, keys / "release.pem")
    ref = f"oci-layout://{root / 'layout'}:v1"
    publish(bundle, parse_ref(ref))
    return {
        "BUNDLE": ref,
        "PUBLIC_KEY": str(keys / "release.pub.pem"),
        "SIGN_KEY": str(keys / "release.pem"),
        "CONTRACT_DIGEST": Contract.from_yaml(default_contract()).sha256,
        "GATE_PATH": str(ROOT),
    }


def _run(
    tmp_path: Path, published: dict[str, str], jobs: set[str] | None, *breaks: tuple[str, str, str]
) -> RunResult:
    repo = caller_repository(tmp_path / "repo", {".github/workflows/caller.yml": yaml.safe_dump(CALLER)})
    for path, old, new in breaks:
        plant(repo, path, old, new)
    # gate is preinstalled on the image (this checkout's dev environment): the verify job says
    # install: 'false', and the release job's install step is skipped, since installing is
    # tested by test_install_pins.py and the full release, and costs a virtual environment per run.
    image = RunnerImage.bare().with_path(str(Path(sys.executable).parent))
    with WorkflowRunner(tmp_path / "runner", image=image, repository=repo, vars=published) as runner:
        return runner.run(".github/workflows/caller.yml", jobs=jobs, skip={"release/release": {"install"}})


def test_the_unbroken_copy_passes_the_callers_checks(tmp_path: Path, published: dict[str, str]) -> None:
    run = _run(tmp_path, published, None)
    results = {name: job.result for name, job in run.jobs.items()}
    # The release itself fails (the run does not exist); everything the caller checks holds.
    assert results == {
        "release/release": "failure",
        "release": "failure",
        "report": "success",
        "verify": "success",
    }, run.log
    assert run.jobs["release"].outputs == {"released": "false", "digest": "", "exit-code": "2"}
    assert run.jobs["verify"].step("verify").outputs["verified"] == "true"


def test_a_broken_job_output_mapping_fails_the_callers_run(tmp_path: Path, published: dict[str, str]) -> None:
    broken = (
        RELEASE,
        "exit-code: ${{ steps.release.outputs.exit-code }}",
        "exit-code: ${{ steps.relase.outputs.exit-code }}",
    )
    run = _run(tmp_path, published, {"report"}, broken)
    # GitHub evaluates the typo to an empty string: no error where it is, a failure where it is used.
    assert run.jobs["release"].outputs == {"released": "false", "digest": "", "exit-code": ""}
    assert run.jobs["report"].result == "failure"
    assert run.jobs["report"].step("check").returncode == 1


@pytest.mark.parametrize(
    "condition",
    ["success()", "always() && inputs.out-dri != ''"],
    ids=["status-function", "typo"],
)
def test_a_broken_if_condition_fails_the_callers_run(
    tmp_path: Path, published: dict[str, str], condition: str
) -> None:
    broken = (RELEASE, "        if: always()\n", f"        if: {condition}\n")
    run = _run(tmp_path, published, {"report"}, broken)
    upload = run.jobs["release/release"].step("Keep the bundle, verdict and summary")
    assert not upload.ran
    assert run.jobs["report"].result == "failure"
    assert "Artifact not found for name: gate-release" in run.jobs["report"].log


def test_a_broken_composite_action_input_fails_the_callers_run(
    tmp_path: Path, published: dict[str, str]
) -> None:
    broken = (ACTION, "KEY: ${{ inputs.key }}", "KEY: ${{ inputs.kye }}")
    run = _run(tmp_path, published, {"verify"}, broken)
    verify = run.jobs["verify"]
    assert verify.result == "failure"
    assert verify.step("verify").outputs["verified"] == "false"
    assert "give exactly one of key, cert-identity or sigstore-identity" in verify.step("verify").stdout
    assert not verify.step("check").ran
