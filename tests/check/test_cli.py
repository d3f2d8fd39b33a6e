"""`gate check` on the command line: exit statuses 0/1/2, --json shape, the table, the named contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gate.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``gate check ARGV``, naming the embedded contract unless ARGV names one (nothing is defaulted)."""
    code = main(["check", *argv, *([] if "--contract" in argv else ["--contract", "smollm2"])])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clean_adapter_exits_0_with_json_report(clean_adapter: Path, base_model_dir: Path, capsys):
    code, out, _ = run_cli(capsys, str(clean_adapter), "--base", str(base_model_dir), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["passed"] is True and report["findings"] == [] and report["version"] == "1.0"
    assert report["contract"]["name"] == "smollm2-vllm" and len(report["contract"]["sha256"]) == 64


def test_error_finding_exits_1_and_json_lists_rule_severity_message_path_hint(adapter_factory, capsys):
    adapter = adapter_factory("r32", rank=32)
    code, out, _ = run_cli(capsys, str(adapter), "--json")
    report = json.loads(out)
    assert code == 1 and report["passed"] is False
    [finding] = report["findings"]
    assert set(finding) == {"rule", "severity", "message", "path", "hint"}
    assert finding["rule"] == "adapter.rank-above-max" and finding["severity"] == "error"
    assert finding["path"] == "adapter_config.json"


def test_warning_only_exits_0(adapter_factory, base_model_dir: Path, capsys):
    adapter = adapter_factory("warn")
    (adapter / "adapter_model.bin").write_bytes(b"junk")
    code, out, _ = run_cli(capsys, str(adapter), "--base", str(base_model_dir), "--json")
    assert code == 0
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["files.pickle-ignored"]


def test_unreadable_input_exits_2_with_a_clear_message(tmp_path: Path, capsys):
    code, out, err = run_cli(capsys, str(tmp_path / "missing"))
    assert code == 2 and out == ""
    assert "no such adapter directory" in err


def test_malformed_contract_exits_2_naming_the_field(
    clean_adapter: Path, default_contract_path: Path, tmp_path, capsys
):
    bad = tmp_path / "bad.yaml"
    text = default_contract_path.read_text().replace("max_lora_rank: 16", "max_lora_rank: 24")
    bad.write_text(text)
    (tmp_path / "smollm2-chat.jinja").write_text(
        (default_contract_path.parent / "smollm2-chat.jinja").read_text()
    )
    code, _, err = run_cli(capsys, str(clean_adapter), "--contract", str(bad))
    assert code == 2
    assert (
        f"{bad}: serving.max_lora_rank: must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (got 24)" in err
    )


def test_table_output_shows_rule_ids_and_fixes(adapter_factory, capsys):
    adapter = adapter_factory("dora", tweak_config={"use_dora": True})
    code, out, _ = run_cli(capsys, str(adapter))
    assert code == 1
    assert "FAILED" in out and "adapter.dora" in out and "fix:" in out


def test_out_writes_the_json_report_atomically(clean_adapter: Path, tmp_path: Path, capsys):
    target = tmp_path / "reports" / "check.json"
    code, _, _ = run_cli(capsys, str(clean_adapter), "--out", str(target))
    assert code == 0 and json.loads(target.read_text())["passed"] is True


def test_help_says_the_contract_is_required_and_how_to_name_the_embedded_one(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
    assert "or 'smollm2' for the embedded demo contract (required)" in text
    assert "--no-base packaging checks only" in text


def test_console_script_runs_in_a_fresh_process(clean_adapter: Path):
    done = subprocess.run(
        [sys.executable, "-m", "gate", "check", str(clean_adapter), "--contract", "smollm2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"] is True


def test_list_rules_prints_every_rule_with_its_fix(capsys):
    assert main(["check", "--list-rules", "--json"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert {"rule": "adapter.rank-above-max", "severity": "error"}.items() <= rules[
        [r["rule"] for r in rules].index("adapter.rank-above-max")
    ].items()
    assert all(r["hint"] and r["title"] for r in rules) and len(rules) == len({r["rule"] for r in rules})


def test_a_run_directory_is_checked_through_its_adapter(clean_adapter: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    clean_adapter.rename(run_dir / "adapter")
    (run_dir / "run.json").write_text("{}")
    code, out, err = run_cli(capsys, str(run_dir), "--json")
    assert code == 0 and json.loads(out)["adapter"] == str(run_dir / "adapter")
    assert "is a run directory" in " ".join(err.split())  # rich wraps long lines


def test_check_imports_no_heavy_stack(clean_adapter: Path):
    code = (
        "import sys; from pathlib import Path; from gate.check import run_check;"
        "from gate.contract import Contract; from gate.resources import default_contract;"
        f"r = run_check(Path({str(clean_adapter)!r}), Contract.from_yaml(default_contract()));"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'lm_eval', 'safetensors')"
        " if m in sys.modules]\n"
        "assert r.passed and not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
