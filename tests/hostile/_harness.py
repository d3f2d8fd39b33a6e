"""The hostile-input harness: run one ``gate`` command on an attacker's input, bounded.

Every case of the corpus (``tests/hostile/test_*.py``) runs a real ``gate``
command in a fresh process with a working directory, ``HOME`` and ``GATE_HOME``
inside a private sandbox, and asserts what issue 12 promises of hostile input:
a finding (exit 1) or one clear error (exit 2), never a traceback; within the
time limit (the process is killed past it); within the memory limit (peak RSS of
the process, measured by the kernel through ``wait4``); and nothing written
anywhere in the sandbox but the output directory.

Example::

    outcome = run_gate(["check", str(adapter), "--contract", str(contract), "--no-base"], sandbox=box)
    outcome.assert_clean(expect_exit=1)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MEMORY_BYTES", "SECONDS", "Outcome", "run_gate", "snapshot"]

#: The bound every hostile case must end within.
SECONDS = 5.0
MEMORY_BYTES = 512 << 20
#: Where a case may write: ``<sandbox>/out`` (the command's output directory).
OUT = "out"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (not following links) -> (size, mtime_ns)."""
    seen: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            seen[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return seen


@dataclass(frozen=True)
class Outcome:
    """What one bounded ``gate`` run did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_bytes: int
    timed_out: bool
    #: Paths created or changed in the sandbox outside ``out/``.
    written_outside: tuple[str, ...] = field(default=())

    def assert_clean(self, *, expect_exit: int | Sequence[int]) -> None:
        """Assert it ended as hostile input must: expected exit, bounded, no traceback, no stray file."""
        allowed = (expect_exit,) if isinstance(expect_exit, int) else tuple(expect_exit)
        where = f"gate {' '.join(self.argv)}"
        assert not self.timed_out, f"{where}: still running after {SECONDS} s"
        assert "Traceback (most recent call last)" not in self.stderr + self.stdout, (
            f"{where}: traceback\n{self.stderr[-2000:]}"
        )
        assert self.returncode in allowed, (
            f"{where}: exit {self.returncode}, expected {allowed}\n"
            f"{self.stdout[-1500:]}\n{self.stderr[-1500:]}"
        )
        assert self.seconds <= SECONDS, f"{where}: took {self.seconds:.2f} s"
        assert self.max_rss_bytes <= MEMORY_BYTES, f"{where}: peak RSS {self.max_rss_bytes >> 20} MiB"
        assert not self.written_outside, f"{where}: wrote outside out/: {self.written_outside}"
        if self.returncode == 2:
            lines = [line for line in self.stderr.splitlines() if line.startswith("gate: error:")]
            assert len(lines) == 1, f"{where}: expected one error line, got\n{self.stderr[-1500:]}"


def run_gate(
    args: Sequence[str],
    *,
    sandbox: Path,
    env: Mapping[str, str] | None = None,
    seconds: float = SECONDS,
) -> Outcome:
    """Run ``python -m gate ARGS`` with ``sandbox`` as its working directory, home and gate home.

    The command may write only under ``sandbox/out`` (created here); everything else
    in the sandbox (the hostile input itself, ``home/``) is compared before and after.
    """
    sandbox.mkdir(parents=True, exist_ok=True)
    (sandbox / OUT).mkdir(exist_ok=True)
    home = sandbox / "home"
    home.mkdir(exist_ok=True)
    before = {k: v for k, v in snapshot(sandbox).items() if not _under_out(k)}
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GATE_HOME": str(home / "gate"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        **(env or {}),
    }
    argv = (sys.executable, "-m", "gate", *args)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=sandbox,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            start_new_session=True,
        )
        # wait4 gives this child's own peak RSS (ru_maxrss, KiB on Linux), unlike RUSAGE_CHILDREN.
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > seconds:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers the command left behind
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    rss = usage.ru_maxrss * 1024
    after = {k: v for k, v in snapshot(sandbox).items() if not _under_out(k)}
    changed = tuple(sorted(k for k, v in after.items() if before.get(k) != v))
    return Outcome(
        argv=tuple(args),
        returncode=proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        seconds=elapsed,
        max_rss_bytes=rss,
        timed_out=timed_out,
        written_outside=changed,
    )


def _under_out(rel: str) -> bool:
    return rel == OUT or rel.startswith(OUT + os.sep)
