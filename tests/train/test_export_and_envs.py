"""Toolkit exports that break the contract, and cached toolkit environments."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from gate.contract import Contract
from gate.envs import ensure
from gate.training import Host, get_trainer, load_record, train


@pytest.mark.slow
def test_unsloth_template_replacement_is_reported_by_the_check(
    tmp_path: Path, default_spec_path: Path, default_contract_path: Path, base_model_dir: Path
) -> None:
    """Unsloth's get_chat_template (as in its notebooks) replaces the template: gate keeps what the
    toolkit saved, records the change, and `gate check` fails the adapter. The plugin's default
    (no get_chat_template) keeps the base's template and passes (tests/train/test_toolkits.py)."""
    from gate.check import run_check

    raw = yaml.safe_load(default_spec_path.read_text())
    raw["dataset"]["path"] = str(default_spec_path.parent / raw["dataset"]["path"])
    raw["overrides"] = {"unsloth": {"chat_template": "chatml"}}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    record = train(spec, "unsloth", out, steps=1, quiet=True)
    assert record.adapter is not None
    assert "chat_template.jinja" in record.adapter.tokenizer_changes
    report = run_check(out / "adapter", Contract.from_yaml(default_contract_path), base_model_dir)
    assert not report.passed
    assert any("template" in f.rule for f in report.errors), [f.to_dict() for f in report.errors]


# Cheap for every toolkit: the pilot test builds each toolkit's environment in the same run anyway.
@pytest.mark.parametrize("toolkit", ["llamafactory", "axolotl", "unsloth"])
@pytest.mark.slow
def test_second_ensure_reuses_the_environment_built_from_the_committed_lock(toolkit: str) -> None:
    trainer = get_trainer(toolkit)
    spec = trainer.env_spec(Host.detect())
    env = ensure(spec, quiet=True)  # built by gate from the committed lock on a fresh machine
    assert env.path is not None
    marker = env.path / "gate-env.json"
    before = marker.stat().st_mtime_ns
    started = time.monotonic()
    again = ensure(spec, quiet=True)
    took = time.monotonic() - started
    assert again.path == env.path and again.lock_sha256 == env.lock_sha256
    assert marker.stat().st_mtime_ns == before, "the marker was rewritten: the environment was rebuilt"
    assert took < 5.0
    installed = (env.path / "installed.txt").read_text()
    assert f"{trainer.dist_name}==" in installed
    meta = json.loads(marker.read_text())
    assert meta["build_seconds"] > 0 and meta["size_bytes"] > 100 << 20
    # The run records' lock digest is the committed lock's, and it names the cached directory.
    assert env.lock_sha256 == meta["lock_sha256"] == spec.lock().sha256
    assert meta["lock_file"] == spec.lock_path.name
    assert env.path.name == f"trainer-{toolkit}-{spec.digest()[:12]}"


@pytest.mark.slow
def test_trained_adapter_run_fixture_is_a_finished_run(trained_adapter_run: Path) -> None:
    record = load_record(trained_adapter_run)
    assert record.status == "succeeded"
    assert (trained_adapter_run / "adapter" / "adapter_model.safetensors").is_file()
    assert record.metrics.final_loss is not None and record.metrics.final_loss < record.metrics.steps[0].loss
