"""Every toolkit trains a real LoRA on CPU, the result passes `gate check`, and it reproduces bit for bit.

The runs are the session's real pilot (tests/fixtures/pilot.py): each toolkit trained
the embedded default twice with the same record, so repeat 2 is a reproduction of
repeat 1 made by the same code path; one more `gate reproduce` proves the command.
Nothing here trains on its own, so all three toolkits run in the default test set.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gate.contract import Contract
from gate.digests import file_sha256
from gate.training import load_record
from tests.fixtures.pilot import PILOT_STEPS, PILOT_TOOLKITS, RealPilot

STEPS = PILOT_STEPS

pytestmark = pytest.mark.slow


@pytest.fixture(params=PILOT_TOOLKITS)
def toolkit(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def short_run(real_pilot: RealPilot, toolkit: str) -> Path:
    """RUN_DIR of the embedded default trained STEPS steps with ``toolkit`` (the pilot's repeat 1)."""
    return real_pilot.out / "runs" / f"{toolkit}-1"


def test_run_record_validates_against_the_published_schema(short_run: Path) -> None:
    from gate.resources import contracts_dir

    schema = json.loads((contracts_dir() / "run.schema.json").read_text())
    record = json.loads((short_run / "run.json").read_text())
    jsonschema.validate(record, schema)
    assert record["status"] == "succeeded"
    assert record["toolkit"]["version"] not in ("", "unknown")
    assert record["environment"]["lock_sha256"]
    assert record["environment"]["packages"]["torch"].startswith("2.")
    assert record["dataset"]["rows"] == 348
    assert [s["step"] for s in record["metrics"]["steps"]] == list(range(1, STEPS + 1))
    assert all(s["loss"] > 0 for s in record["metrics"]["steps"])
    assert record["metrics"]["peak_rss_bytes"] > 100 << 20
    assert record["host"]["device"] == "cpu"


def test_adapter_is_peft_lora_with_recorded_digests(short_run: Path) -> None:
    record = load_record(short_run)
    adapter = short_run / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (adapter / name).is_file(), name
    assert record.adapter is not None
    assert sorted(record.adapter.files) == sorted(p.name for p in adapter.iterdir())
    for name, info in record.adapter.files.items():
        assert file_sha256(adapter / name) == info.sha256
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8
    assert not (short_run / "output").exists(), "the toolkit's working output is not left beside the adapter"
    native = short_run / record.native_config.filename  # type: ignore[union-attr]
    assert native.read_text() == record.native_config.text  # type: ignore[union-attr]


def test_adapter_passes_the_contract_check(
    short_run: Path, default_contract_path: Path, base_model_dir: Path
) -> None:
    from gate.check import run_check

    report = run_check(short_run / "adapter", Contract.from_yaml(default_contract_path), base_model_dir)
    assert report.passed, [f.to_dict() for f in report.errors]
    assert load_record(short_run).adapter.tokenizer_changes == []  # type: ignore[union-attr]


def test_a_second_run_from_the_same_record_is_bit_identical(real_pilot: RealPilot, toolkit: str) -> None:
    first, second = (real_pilot.out / "runs" / f"{toolkit}-{i}" for i in (1, 2))
    a, b = load_record(first), load_record(second)
    assert a.adapter is not None and b.adapter is not None
    assert {n: f.sha256 for n, f in a.adapter.files.items()} == {
        n: f.sha256 for n, f in b.adapter.files.items()
    }
    assert [s.loss for s in a.metrics.steps] == [s.loss for s in b.metrics.steps]


def test_gate_reproduce_retrains_from_the_record_and_finds_identical_adapter_bytes(
    real_pilot: RealPilot, tmp_path: Path
) -> None:
    from gate.cli import main

    run = real_pilot.out / "runs" / "unsloth-1"  # the cheapest toolkit; the other two are compared above
    out = tmp_path / "again"
    code = main(["reproduce", str(run), "--out", str(out), "--json", "--tolerance", "0"])
    assert code == 0
    original, again = load_record(run), load_record(out)
    assert again.status == "succeeded"
    assert [s.loss for s in again.metrics.steps] == [s.loss for s in original.metrics.steps]
    for name, info in original.adapter.files.items():  # type: ignore[union-attr]
        assert file_sha256(out / "adapter" / name) == info.sha256, name
