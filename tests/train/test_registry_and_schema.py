"""Plugin discovery through entry points, and the published run.json schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gate.errors import InputError
from gate.training import Registry, Trainer, run_schema_json, trainers


def test_shipped_toolkits_are_registered_through_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="gate.trainers")}
    assert names["llamafactory"] == "trainers.llamafactory:LlamaFactoryTrainer"
    assert names["axolotl"] == "trainers.axolotl:AxolotlTrainer"
    assert names["unsloth"] == "trainers.unsloth:UnslothTrainer"
    assert {"llamafactory", "axolotl", "unsloth"} <= set(trainers.names())


def test_a_fourth_toolkit_joins_from_outside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site"
    (pkg / "mytk").mkdir(parents=True)
    (pkg / "mytk" / "__init__.py").write_text(
        "from gate.training import Trainer\n"
        "class MyTrainer(Trainer):\n"
        "    name = 'mytk'\n    config_filename = 'my.yaml'\n    dist_name = 'mytk'\n"
        "    def env_spec(self, host): raise NotImplementedError\n"
        "    def native_config(self, ctx): return ''\n"
        "    def command(self, env, ctx): return []\n"
    )
    dist = pkg / "mytk-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mytk\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gate.trainers]\nmytk = mytk:MyTrainer\n")
    monkeypatch.syspath_prepend(str(pkg))
    fresh: Registry[Trainer] = Registry("toolkit", Trainer, entry_point_group="gate.trainers")  # type: ignore[type-abstract]
    assert "mytk" in fresh.names()
    assert fresh.get("mytk").__name__ == "MyTrainer"
    sys.modules.pop("mytk", None)


def test_unknown_toolkit_gets_did_you_mean() -> None:
    with pytest.raises(InputError, match="unknown toolkit 'unslooth'") as exc:
        trainers.get("unslooth")
    assert exc.value.hint == "did you mean 'unsloth'?"


def test_published_run_schema_is_up_to_date() -> None:
    from gate.resources import contracts_dir

    published = (contracts_dir() / "run.schema.json").read_text()
    assert published == run_schema_json(), "regenerate: python -m gate.training --write-schema"
    schema = json.loads(published)
    assert {"status", "toolkit", "environment", "dataset", "metrics", "adapter"} <= set(schema["properties"])
