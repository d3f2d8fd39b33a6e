"""Approval signs and publishes the staged, gated bundle (no gate re-runs), the approval in its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate import bundle as layout
from gate.approve import Approver, approve_release
from gate.cli import main
from gate.contract import Contract
from gate.errors import GateFailure, InputError
from gate.resources import default_contract
from gate.signing import SigningConfig, TrustPolicy
from gate.verify import verify_bundle
from tests.release.conftest import BundleFactory, KeyPair

ALICE = Approver(by="alice", via="cli", subject="alice")


def _signing(keys: dict[str, KeyPair]) -> SigningConfig:
    return SigningConfig(method="key", private_key=keys["release"].private)


def _target(tmp_path: Path) -> str:
    return f"oci-layout://{tmp_path / 'layout'}:v1"


def test_approval_is_in_the_signed_verdict_and_the_published_bundle_verifies(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    staged = make_bundle(seed=1, awaiting_approval=True)
    waiting = layout.read_verdict(staged)
    assert waiting.stopped_at == "approval" and not (staged / layout.SIGNATURE).exists()
    reports_before = {rel: (staged / rel).read_bytes() for rel in layout.REPORTS.values()}

    result = approve_release(staged, ALICE, _signing(release_keys), _target(tmp_path))

    assert result.passed and result.published is not None
    assert [e["event"] for e in result.events if e["event"].startswith("gate.start")] == ["gate.start"] * 2
    assert [e["gate"] for e in result.events if e["event"] == "gate.start"] == ["sign", "publish"]
    # The reports the gates wrote are the signed ones, byte for byte.
    assert {rel: (staged / rel).read_bytes() for rel in layout.REPORTS.values()} == reports_before
    verified = verify_bundle(
        _target(tmp_path),
        TrustPolicy(method="key", public_key=release_keys["release"].public),
        expected_contract_sha256=Contract.from_yaml(default_contract()).sha256,
        out=tmp_path / "pulled",
    )
    approval = verified.verdict.approval
    assert approval is not None
    assert (approval.by, approval.via, approval.subject) == ("alice", "cli", "alice")
    assert approval.adapter_digest == waiting.adapter_digest
    assert approval.staged_digest == waiting.staged_digest
    assert verified.verdict.passed and verified.verdict.approval_required


def test_approving_a_staged_bundle_whose_bytes_changed_is_refused_and_nothing_is_signed(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    staged = make_bundle(seed=2, awaiting_approval=True)
    report = staged / layout.REPORTS["eval"]
    report.write_text(json.dumps({**json.loads(report.read_text()), "passed": True, "note": "edited"}))
    with pytest.raises(
        GateFailure, match="the staged bundle changed since the gates ran: its digest is sha256:"
    ):
        approve_release(staged, ALICE, _signing(release_keys), _target(tmp_path))
    assert not (staged / layout.SIGNATURE).exists()
    assert layout.read_verdict(staged).approval is None
    assert not (tmp_path / "layout").exists()


def test_approving_a_staged_bundle_whose_verdict_was_edited_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    staged = make_bundle(seed=3, awaiting_approval=True)
    data = json.loads((staged / layout.VERDICT).read_text())
    data["tools"] = {"vllm": "9.9.9"}
    (staged / layout.VERDICT).write_text(json.dumps(data))
    with pytest.raises(GateFailure, match="the staged bundle changed since the gates ran"):
        approve_release(staged, ALICE, _signing(release_keys), _target(tmp_path))
    assert not (staged / layout.SIGNATURE).exists()


def test_approval_for_another_staged_digest_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    staged = make_bundle(seed=4, awaiting_approval=True)
    with pytest.raises(GateFailure, match="the approval was given for sha256:" + "0" * 64):
        approve_release(
            staged, ALICE, _signing(release_keys), _target(tmp_path), expected_digest="sha256:" + "0" * 64
        )
    assert not (staged / layout.SIGNATURE).exists()


def test_a_bundle_not_awaiting_approval_cannot_be_approved(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    failed = make_bundle(seed=5, failed_gate="smoke", sign=False)
    with pytest.raises(InputError, match=r"is not awaiting approval \(stopped at smoke\)"):
        approve_release(failed, ALICE, _signing(release_keys), _target(tmp_path))


def test_verdict_of_an_approval_required_contract_without_an_approval_is_refused(
    make_bundle: BundleFactory,
) -> None:
    staged = make_bundle(seed=6, awaiting_approval=True)
    verdict = layout.read_verdict(staged).model_copy(update={"passed": True, "stopped_at": None})
    assert verdict.problems() == ["the contract requires a person's approval and the verdict records none"]


def test_release_cli_approve_signs_publishes_and_needs_the_approver(
    make_bundle: BundleFactory,
    release_keys: dict[str, KeyPair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    staged = make_bundle(seed=7, awaiting_approval=True)
    key = str(release_keys["release"].private)
    argv = ["release", "--approve", str(staged), "--to", _target(tmp_path), "--sign-key", key, "--json"]
    assert main(argv) == 2
    assert "--approve needs --approver NAME" in capsys.readouterr().err
    assert main([*argv, "--approver", "bob"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["released"] is True
    assert shown["verdict"]["approval"]["by"] == "bob"
