"""No command falls back to SmolLM2 unless asked: on a run of another base, every command that takes a
contract or a base, run without it, exits 2 with one error line naming the flag to pass.

The commands are enumerated from the CLI registry (every parser with a ``--contract`` or ``--base``
option), so a new command fails here until it is listed with the arguments it needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from gate.cli import build_parser, main
from tests.cli.conftest import OwnRun

#: command path -> its arguments other than --contract/--base (the input the user did give).
Argv = Callable[[OwnRun, Path], list[str]]
COMMANDS: dict[str, Argv] = {
    "check": lambda r, tmp: [str(r.run)],
    "smoke": lambda r, tmp: [str(r.run / "adapter"), "--out", str(tmp / "smoke")],
    "eval": lambda r, tmp: [str(r.run), "--out", str(tmp / "eval")],
    "release": lambda r, tmp: [
        *("--run", str(r.run), "--to", f"oci-layout://{tmp / 'layout'}:v1"),
        *("--sign-key", str(r.key), "--out", str(tmp / "bundle")),
    ],
    "verify bundle": lambda r, tmp: [f"oci-layout://{tmp / 'layout'}:v1", "--key", str(tmp / "k.pem")],
    "pull": lambda r, tmp: [f"oci-layout://{tmp / 'layout'}:v1", "--out", str(tmp / "p"), "--key", "k.pem"],
    "pilot": lambda r, tmp: [str(r.spec), "--toolkits", "unsloth", "--out", str(tmp / "pilot")],
    "preflight": lambda r, tmp: [str(r.spec), "--toolkit", "unsloth", "--no-smoke"],
    "contract init": lambda r, tmp: ["--out", str(tmp / "c.yaml")],
    "contract verify": lambda r, tmp: [str(r.contract)],
    # --base or --base-identity is required by argparse; the contract case passes --base
    "serve-config": lambda r, tmp: ["--out", str(tmp / "cfg.json"), "--adapter", f"a=oci-layout://{tmp}"],
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Every runnable command path -> its option strings."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(path): {o for a in parser._actions for o in a.option_strings}}
    found: dict[str, set[str]] = {}
    for action in subs:
        for name, child in action.choices.items():
            found.update(_leaves(child, (*path, name)))
    return found


TAKING = {cmd: opts & {"--contract", "--base"} for cmd, opts in _leaves(build_parser()).items()}
TAKING = {cmd: flags for cmd, flags in TAKING.items() if flags}


def test_every_command_that_takes_a_contract_or_a_base_is_listed_here():
    assert set(TAKING) == set(COMMANDS)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own "required" errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err  # one error, no traceback
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model store (no `gate base add` of another test can answer) and a neutral directory."""
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GATE_CONTRACT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", sorted(c for c, flags in TAKING.items() if "--contract" in flags))
def test_without_contract_the_command_exits_2_naming_the_flag(
    command: str, own_run: OwnRun, sandbox: Path, capsys: pytest.CaptureFixture[str]
):
    argv = [*command.split(), *COMMANDS[command](own_run, sandbox)]
    if command == "serve-config":
        argv += ["--base", str(own_run.base)]
    code, err = _run(argv, capsys)
    line = _error_line(err)
    assert code == 2 and "--contract" in line, err
    assert "smollm2" in err  # the embedded contract is offered by name, never taken silently


@pytest.mark.parametrize("command", sorted(c for c, flags in TAKING.items() if "--base" in flags))
def test_with_a_contract_naming_no_base_the_command_exits_2_naming_the_base_flag(
    command: str, own_run: OwnRun, sandbox: Path, capsys: pytest.CaptureFixture[str]
):
    argv = [*command.split(), *COMMANDS[command](own_run, sandbox)]
    if "--contract" in TAKING[command] and command != "contract verify":
        argv += ["--contract", str(own_run.contract)]
    code, err = _run(argv, capsys)
    line = _error_line(err)
    assert code == 2 and "--base" in line, err
    assert not (sandbox / "home" / "models").exists()  # nothing built the embedded SmolLM2 base


def test_the_base_the_contract_names_by_identity_is_found_once_registered(
    own_run: OwnRun, sandbox: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["base", "add", str(own_run.base)]) == 0
    code, err = _run(["check", str(own_run.run), "--contract", str(own_run.contract), "--json"], capsys)
    assert code == 0, err
    code, _ = _run(["check", str(own_run.run), "--contract", str(own_run.contract), "--no-base"], capsys)
    assert code == 0
