"""Every command works from any working directory: each cheap command is run from a directory beside the
project with relative arguments only, and what it writes lands (and points) where those arguments said.

Covered here: base add/list, contract init/verify, check (with --base, and with the base found through the
contract's relative ``base_model.source``), verify bundle, pull, serve-config, env list. The commands that
train or boot a server (train, reproduce, preflight, smoke, eval, release --run, pilot, serve) are exercised
with absolute paths by their own tests; the resolver makes every base and contract path absolute before a
subprocess sees it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gate.cli import main
from tests.cli.conftest import OwnRun


@pytest.fixture
def project(own_run: OwnRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp/project`` (contract, run, key, a signed release) and the working directory ``tmp/elsewhere``."""
    from gate.oci import parse_ref, publish
    from gate.signing import generate_key
    from tests.fixtures.adapters import write_adapter
    from tests.fixtures.bundles import signed_release

    root = tmp_path / "project"
    (root / "contracts").mkdir(parents=True)
    shutil.copy(own_run.contract, root / "contracts" / "qwen2.yaml")
    (root / "contracts" / "eval").mkdir()
    shutil.copytree(own_run.run, root / "run")
    generate_key(root / "release.key", root / "release.pub")
    adapter = write_adapter(tmp_path / "smollm2-adapter", layers=[0], tokenizer=False)
    bundle = signed_release(root / "bundle", adapter, None, root / "release.key")
    publish(bundle, parse_ref(f"oci-layout://{root / 'layout'}:v1"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return root


def _rel(path: Path) -> str:
    text = os.path.relpath(path)
    assert not os.path.isabs(text)
    return text


def _ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"gate {' '.join(argv)}: exit {code}\n{err[-2000:]}"
    return out


def test_contract_and_base_commands_take_relative_paths_from_another_directory(
    own_run: OwnRun, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))  # an empty store, this test's own
    base = _rel(own_run.base)
    _ok(["base", "add", base], capsys)
    [entry] = json.loads(_ok(["base", "list", "--json"], capsys))
    assert entry["path"] == str(own_run.base.resolve())  # stored absolute: usable from anywhere
    written = "../project/contracts/init.yaml"
    _ok(["contract", "init", "--base", base, "--out", written], capsys)
    assert (project / "contracts" / "init.yaml").is_file()
    _ok(["contract", "verify", written, "--base", base], capsys)


def test_check_takes_relative_paths_and_finds_the_base_the_contract_names_relatively(
    own_run: OwnRun, project: Path, capsys
):
    run, contract = "../project/run", "../project/contracts/qwen2.yaml"
    report = json.loads(
        _ok(["check", run, "--contract", contract, "--base", _rel(own_run.base), "--json"], capsys)
    )
    assert report["passed"] is True
    # a contract whose base_model.source is relative to the contract file, not to the working directory
    text = (project / "contracts" / "qwen2.yaml").read_text()
    source = os.path.relpath(own_run.base, project / "contracts")
    sourced = project / "contracts" / "sourced.yaml"
    sourced.write_text(text.replace("  identity: ", f"  source: {source}\n  identity: ", 1))
    report = json.loads(
        _ok(["check", run, "--contract", "../project/contracts/sourced.yaml", "--json"], capsys)
    )
    assert report["passed"] is True and Path(report["base"]) == own_run.base.resolve()
    out = "../project/reports/check.json"
    _ok(["check", run, "--contract", contract, "--no-base", "--out", out], capsys)
    assert json.loads((project / "reports" / "check.json").read_text())["passed"] is True


def test_verify_pull_and_serve_config_take_relative_paths(project: Path, capsys):
    key = "../project/release.pub"
    trust = ["--key", key, "--contract", "smollm2"]
    _ok(["verify", "bundle", "../project/bundle", *trust], capsys)
    _ok(["verify", "bundle", "oci-layout://../project/layout:v1", *trust], capsys)
    _ok(["pull", "oci-layout://../project/layout:v1", "--out", "../project/pulled", *trust], capsys)
    assert (project / "pulled" / "adapter_model.safetensors").is_file()
    argv = ["serve-config", "--out", "../project/resolver.json", "--base-identity", "v2:sha256:" + "0" * 64]
    _ok(
        [*argv, *trust, "--adapter", "a=oci-layout://../project/layout", "--cache", "../project/cache"],
        capsys,
    )
    config = json.loads((project / "resolver.json").read_text())
    # the vLLM plugin reads this file from the server's working directory: no path in it may be relative
    paths = [v for v in _strings(config) if v.endswith((".pub", "layout", "cache")) or "project/" in v]
    assert paths and all(os.path.isabs(p.removeprefix("oci-layout://")) for p in paths), paths


def test_env_list_runs_from_another_directory(project: Path, capsys):
    _ok(["env", "list"], capsys)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
