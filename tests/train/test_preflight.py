"""`gate preflight`: unservable specs are flagged before training; the bundled spec passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate.preflight import SERVABILITY_PROBES, preflight


def _spec(tmp_path: Path, default_spec_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(default_spec_path.read_text())
    raw["dataset"]["path"] = str(default_spec_path.parent / raw["dataset"]["path"])
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _failed(report: object) -> dict[str, str]:
    return {f.check: f.message for f in report.static if f.status == "fail"}  # type: ignore[attr-defined]


def test_rank_above_the_serving_limit_is_flagged_before_training(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path
) -> None:
    spec = _spec(tmp_path, default_spec_path, lora={"r": 32})
    report = preflight(spec, default_contract_path, "unsloth", out_dir=tmp_path / "pf", quiet=True)
    assert not report.passed
    assert "lora.r 32 exceeds the contract's rank limit 16" in _failed(report)["lora.rank"]
    assert not report.trained and not (tmp_path / "pf" / "run").exists()


def test_resize_vocab_is_flagged_for_llamafactory(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path
) -> None:
    spec = _spec(tmp_path, default_spec_path, overrides={"llamafactory": {"resize_vocab": True}})
    report = preflight(spec, default_contract_path, "llamafactory", out_dir=tmp_path / "pf", quiet=True)
    assert "resize_vocab=True" in _failed(report)["toolkit.vocab"]
    assert not report.trained


@pytest.mark.parametrize(
    ("toolkit", "overrides", "check"),
    [
        ("unsloth", {"unsloth": {"chat_template": "chatml"}}, "toolkit.template"),
        ("axolotl", {"axolotl": {"chat_template": "chatml"}}, "toolkit.template"),
        ("llamafactory", {"llamafactory": {"template": "chatml"}}, "toolkit.template"),
    ],
)
def test_toolkit_template_replacement_is_flagged(
    tmp_path: Path,
    default_spec_path: Path,
    default_contract_path: Path,
    toolkit: str,
    overrides: dict[str, object],
    check: str,
) -> None:
    spec = _spec(tmp_path, default_spec_path, overrides=overrides)
    report = preflight(spec, default_contract_path, toolkit, out_dir=tmp_path / "pf", quiet=True)
    assert "template" in _failed(report)[check]
    assert not report.trained


def test_training_with_another_template_is_flagged(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path
) -> None:
    (tmp_path / "other.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    spec = _spec(tmp_path, default_spec_path, prompt={"template_file": str(tmp_path / "other.jinja")})
    report = preflight(spec, default_contract_path, "unsloth", out_dir=tmp_path / "pf", quiet=True)
    assert "not the serving template" in _failed(report)["prompt.template"]


def test_target_module_the_contract_does_not_allow_is_flagged(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path
) -> None:
    raw = yaml.safe_load(default_contract_path.read_text())
    template = default_contract_path.parent / raw["prompt"].pop("chat_template_file")
    raw["prompt"]["chat_template"] = template.read_text()
    raw["adapter"]["allowed_target_modules"] = ["q_proj", "v_proj"]
    contract = tmp_path / "narrow.yaml"
    contract.write_text(yaml.safe_dump(raw))
    report = preflight(default_spec_path, contract, "unsloth", out_dir=tmp_path / "pf", quiet=True)
    assert _failed(report)["lora.target_modules"].startswith(
        "k_proj, o_proj, gate_proj, up_proj, down_proj not allowed"
    )


def test_target_module_the_base_lacks_is_refused(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path
) -> None:
    from gate.errors import InputError

    spec = _spec(tmp_path, default_spec_path, lora={"target_modules": ["q_proj", "lm_head"]})
    with pytest.raises(InputError, match="'lm_head' not a linear module of the base"):
        preflight(spec, default_contract_path, "unsloth", out_dir=tmp_path / "pf", quiet=True)


def test_preflight_cli_reports_json_and_exit_status(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gate.cli import main

    spec = _spec(tmp_path, default_spec_path, lora={"r": 32})
    code = main(
        ["preflight", str(spec), "--contract", str(default_contract_path), "--toolkit", "unsloth", "--json"]
    )
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["trained"] is False
    assert {"check": "lora.rank", "status": "fail"}.items() <= report["static"]["findings"][0].items()


@pytest.mark.slow
def test_bundled_spec_passes_preflight_with_check_and_servable_smoke(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path, vllm_server: object
) -> None:
    report = preflight(
        default_spec_path,
        default_contract_path,
        "unsloth",
        out_dir=tmp_path / "pf",
        server_url=vllm_server.url,  # type: ignore[attr-defined]
        quiet=True,
    )
    assert report.static_passed, [f.to_dict() for f in report.static]
    assert report.trained
    assert report.check is not None and report.check["passed"], report.check
    assert report.smoke is not None, report.notes
    probes = {p["name"]: p["passed"] for p in report.smoke["probes"]}
    assert all(probes[name] for name in SERVABILITY_PROBES), probes
    assert report.passed
    assert report.to_dict()["smoke_servable"] is True
