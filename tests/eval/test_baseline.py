"""``--baseline``: the last release's scores are used only from a bundle verified like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.contract import Contract
from gate.errors import InputError
from gate.evaluate import EvalReport, verified_baseline
from gate.oci import parse_ref, publish
from gate.resources import default_contract
from gate.signing import TrustPolicy
from tests.fixtures.bundles import signed_release
from tests.fixtures.serving import write_lora

SCORES = {"capitals_terse": {"exact_match,strip": {"0:aaaa": 1.0, "1:bbbb": 0.0, "2:cccc": 1.0}}}


@pytest.fixture
def release(tmp_path: Path, baseline_keys: dict[str, tuple[Path, Path]]) -> Path:
    adapter = write_lora(tmp_path / "adapter", layers=(0, 1))
    report = EvalReport(passed=True, verdicts=(), error=None, reference="base", scores={"adapter": SCORES})
    return signed_release(tmp_path / "bundle", adapter, report.to_dict(), baseline_keys["release"][0])


def policy(keys: dict[str, tuple[Path, Path]], name: str = "release") -> TrustPolicy:
    return TrustPolicy(method="key", public_key=keys[name][1])


def contract() -> Contract:
    return Contract.from_yaml(default_contract())


def test_verified_local_bundle_gives_its_per_document_scores(release: Path, baseline_keys) -> None:  # type: ignore[no-untyped-def]
    baseline = verified_baseline(str(release), policy(baseline_keys), contract=contract())
    assert baseline.scores == SCORES
    assert baseline.digest is None and "release.pub" not in baseline.signer


def test_baseline_pulled_from_an_oci_layout_is_verified_first(  # type: ignore[no-untyped-def]
    release: Path, baseline_keys, tmp_path: Path
) -> None:
    ref = f"oci-layout://{tmp_path / 'registry'}:v1"
    published = publish(release, parse_ref(ref))
    baseline = verified_baseline(ref, policy(baseline_keys), contract=contract())
    assert baseline.scores == SCORES
    assert baseline.digest == published.digest


def test_baseline_with_a_broken_signature_is_refused(release: Path, baseline_keys) -> None:  # type: ignore[no-untyped-def]
    eval_report = release / "gate" / "reports" / "eval.json"
    data = json.loads(eval_report.read_text())
    data["per_document"]["adapter"]["capitals_terse"]["exact_match,strip"]["1:bbbb"] = 1.0  # a better past
    eval_report.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"--baseline .* is not a verified release: .*eval\.json"):
        verified_baseline(str(release), policy(baseline_keys), contract=contract())


def test_baseline_signed_by_an_unpinned_key_is_refused(release: Path, baseline_keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="is not a verified release"):
        verified_baseline(str(release), policy(baseline_keys, "stranger"), contract=contract())


def test_unsigned_directory_is_not_a_baseline(release: Path, baseline_keys) -> None:  # type: ignore[no-untyped-def]
    (release / "gate" / "signature.sigstore.json").unlink()
    with pytest.raises(InputError, match="is not a verified release"):
        verified_baseline(str(release), policy(baseline_keys), contract=contract())


def test_cli_baseline_without_a_pinned_signer_exits_2_naming_the_flag(  # type: ignore[no-untyped-def]
    release: Path, tmp_path: Path, capsys
) -> None:
    from gate.cli import main

    adapter = write_lora(tmp_path / "candidate", layers=(0, 1))
    code = main(
        ["eval", str(adapter), "--contract", str(default_contract()), "--baseline", str(release), "--json"]
    )
    assert code == 2
    assert "--baseline-key" in capsys.readouterr().err
