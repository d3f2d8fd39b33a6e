"""Subprocesses that gate starts: streamed, logged, and always reaped.

Every heavy tool (converter, toolkit, vLLM, lm-eval) runs as a child in its own
process group so that Ctrl-C, a timeout or an exception in gate kills the whole
tree, never leaving an orphaned trainer or server behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gate.errors import Error, ToolError

__all__ = ["Completed", "LineChild", "kill_group", "run_streamed", "spawn"]


@dataclass(frozen=True)
class Completed:
    """The outcome of a finished subprocess."""

    returncode: int
    seconds: float
    tail: str
    log_path: Path | None


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group, stdout+stderr to ``log_path`` or a pipe."""
    stdout: int | object
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        stdout = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    else:
        stdout = subprocess.PIPE
    try:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as e:
        raise ToolError(f"cannot start {argv[0]}: {e.strerror}", hint="check the environment") from e
    finally:
        if log_path is not None:
            stdout.close()  # type: ignore[union-attr]


def kill_group(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Stop ``proc`` and every process in its group: SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Children may outlive the leader (vLLM's engine core does): sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        kill_group(proc, grace=5.0)


def run_streamed(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    tail_lines: int = 40,
) -> Completed:
    """Run ``argv`` to completion, streaming each output line to ``on_line`` and ``log_path``.

    The child is killed (with its whole process group) on timeout, on Ctrl-C and
    on any exception raised by ``on_line``. A timeout raises :class:`ToolError`.
    """
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=tail_lines)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", encoding="utf-8", errors="replace") if log_path else None  # noqa: SIM115
    proc = spawn(argv, env=env, cwd=cwd)
    timed_out = threading.Event()
    timer: threading.Timer | None = None
    if timeout is not None:

        def _expire() -> None:
            timed_out.set()
            kill_group(proc, grace=5.0)

        timer = threading.Timer(timeout, _expire)
        timer.daemon = True
        timer.start()
    try:
        with _reaped(proc):
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                tail.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                if on_line is not None:
                    on_line(line)
            proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if log is not None:
            log.close()
    seconds = time.monotonic() - start
    if timed_out.is_set():
        raise ToolError(
            f"{Path(argv[0]).name} did not finish within {timeout:.0f}s and was killed",
            hint=f"see the log at {log_path}" if log_path else None,
        )
    return Completed(proc.returncode, seconds, "\n".join(tail), log_path)


class LineChild:
    """A long-lived child that answers one stdout line per stdin line (stderr to a log).

    Warm helpers (the parity reference, the warm lm-eval) speak this protocol: every read has a
    deadline and a size bound, and any failure stops the child and raises ``error`` (the caller's
    exception type, so its message reads as the caller's).
    """

    def __init__(self, name: str, log_path: Path, *, error: type[Error], max_line: int) -> None:
        self.name, self.log_path, self._error, self._max_line = name, log_path, error, max_line
        self.process: subprocess.Popen[bytes] | None = None
        self._pending = b""

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start the child in its own session (stops a previous one first)."""
        self.close()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(env),
                start_new_session=True,
            )
        finally:
            log.close()
        self._pending = b""
        return self.process

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_line(self, data: bytes) -> None:
        process = self.process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(data + b"\n")
            process.stdin.flush()
        except OSError as e:
            self.close()
            raise self._error(f"{self.name} is gone: {e}") from e

    def read_line(self, deadline: float) -> bytes:
        """The next stdout line (without its newline) by ``deadline`` (``time.monotonic()``)."""
        process = self.process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise self._error(
                    f"{self.name} gave no answer in time and was stopped", hint=f"log {self.log_path}"
                )
            ready, _, _ = select.select([fd], [], [], min(left, 5.0))
            chunk = os.read(fd, 1 << 16) if ready else None
            if chunk == b"" or (chunk is None and process.poll() is not None):
                code = process.poll()
                self.close()
                raise self._error(f"{self.name} exited (status {code})", hint=f"log {self.log_path}")
            if chunk is None:
                continue
            self._pending += chunk
            if len(self._pending) > self._max_line and b"\n" not in self._pending:
                self.close()
                raise self._error(f"{self.name} wrote an over-long line", hint=f"log {self.log_path}")
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def close(self) -> None:
        """Stop the child (idempotent)."""
        process, self.process = self.process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        kill_group(process, grace=5.0)

    def __enter__(self) -> LineChild:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
