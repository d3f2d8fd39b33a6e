"""The score cache: reused only under the very key that produced the scores, never across models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gate.evaluate import ModelScores, _cache

KEY = _cache.ScoreKey(
    model_identity="sha256:" + "1" * 64,
    adapter_digest=None,
    tasks_sha256="2" * 64,
    limit=None,
    serving={"runtime": "vllm", "max_lora_rank": 16},
    served_model="/models/base",
    server_version="0.32.0",
)


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))


def scores(tmp_path: Path) -> ModelScores:
    raw = tmp_path / "raw"
    (raw / "generate").mkdir(parents=True, exist_ok=True)
    (raw / "generate" / "results.json").write_text("{}")
    return ModelScores(
        label="base",
        model="/models/base",
        server_url="http://127.0.0.1:9",
        tasks_sha256=KEY.tasks_sha256,
        per_doc={"t": {"acc,none": {"0:aa": 1.0, "1:bb": 0.0}}},
        aggregates={"t": {"acc,none": 0.5}},
        raw_dir=raw,
        seconds=12.5,
        doc_tags={"t": {"0:aa": ("legal",)}},
        doc_ids={"t": {"0:aa": "q-0", "1:bb": "q-1"}},
    )


def test_stored_scores_come_back_under_the_same_key(tmp_path: Path) -> None:
    original = scores(tmp_path)
    entry = _cache.store(KEY, original)
    got = _cache.load(KEY)
    assert got is not None
    assert got.per_doc == original.per_doc and got.doc_tags == {"t": {"0:aa": ("legal",)}}
    assert (got.raw_dir / "generate" / "results.json").is_file() and got.raw_dir.parent == entry


@pytest.mark.parametrize(
    "change",
    [
        {"adapter_digest": "sha256:" + "3" * 64},  # an adapter is never the base
        {"model_identity": "sha256:" + "4" * 64},  # another base
        {"tasks_sha256": "5" * 64},  # other documents
        {"limit": 5},
        {"serving": {"runtime": "vllm", "max_lora_rank": 64}},  # another serving configuration
        {"server_version": "0.26.0"},
        {"served_model": "/models/other"},
    ],
)
def test_scores_are_never_shared_across_a_changed_key(tmp_path: Path, change: dict[str, object]) -> None:
    _cache.store(KEY, scores(tmp_path))
    other = dataclasses.replace(KEY, **change)  # type: ignore[arg-type]
    assert other.digest() != KEY.digest()
    assert _cache.load(other) is None


def test_an_entry_recorded_under_another_key_is_not_used(tmp_path: Path) -> None:
    entry = _cache.store(KEY, scores(tmp_path))
    data = json.loads((entry / "scores.json").read_text())
    data["key"]["adapter_digest"] = "sha256:" + "6" * 64  # moved or edited by hand
    (entry / "scores.json").write_text(json.dumps(data))
    assert _cache.load(KEY) is None


def test_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_EVAL_CACHE", "off")
    assert not _cache.enabled()
