"""A warm lm-eval process: one per warm pool, so an evaluation no longer pays an interpreter start.

Each evaluation used to start ``lm_eval_run.py`` afresh; importing lm-eval and its API models
alone costs 4-5 s of CPU (10-24 s of wall time on a busy 2-core host) per candidate. This process
(``lm_eval_run.py --serve``) imports once and takes one configuration per stdin line; each run
builds its tasks and models afresh with the same seeds as a one-shot run, streams the same
``@@gate`` progress events, and ends with a ``finished`` event. A process that dies, stalls past
the timeout or writes an over-long line is stopped and started again on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from gate.errors import ToolError
from gate.evaluate._env import lm_eval_env_spec
from gate.proc import Completed

__all__ = ["WarmEvaluator", "WarmEvaluators"]

_SCRIPT = Path(__file__).resolve().parents[1] / "_envscripts" / "lm_eval_run.py"
_EVENT = "@@gate "
_MAX_LINE = 1 << 20
_READY_TIMEOUT = 600.0


class WarmEvaluator:
    """One long-lived lm-eval process (see the module docstring); runs are serialized.

    Example::

        with WarmEvaluator(log_dir=Path("logs")) as lm_eval:
            done = lm_eval.run(config_path, extra_env={...}, on_line=print, timeout=3600)
    """

    def __init__(self, *, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._pending = b""

    @property
    def log_path(self) -> Path:
        """Where the process's stderr (lm-eval's own messages and tracebacks) goes."""
        return self.log_dir / "lm-eval-warm.log"

    def _start(self, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        from gate.envs import ensure

        env = ensure(lm_eval_env_spec())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
        try:
            process = subprocess.Popen(
                [str(env.python), str(_SCRIPT), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env.environ(extra_env),
                start_new_session=True,
            )
        finally:
            log.close()
        self._process, self._env, self._pending = process, dict(extra_env), b""
        self.starts += 1
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            event = _event(self._line(process, deadline))
            if event is not None and event.get("event") == "ready":
                return process

    def _line(self, process: subprocess.Popen[bytes], deadline: float) -> str:
        """The next stdout line; stops the process (raising :class:`ToolError`) on timeout or exit."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ToolError(
                    "the warm lm-eval process did not finish in time and was stopped",
                    hint=f"log {self.log_path}",
                )
            ready, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = process.poll()
                self.close()
                raise ToolError(
                    f"the warm lm-eval process exited (status {code})", hint=f"log {self.log_path}"
                )
            self._pending += chunk
            if len(self._pending) > _MAX_LINE and b"\n" not in self._pending:
                self.close()
                raise ToolError("the warm lm-eval process wrote an over-long line")
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", errors="replace")

    def run(
        self,
        config_path: Path,
        *,
        extra_env: dict[str, str],
        log_path: Path,
        on_line: Callable[[str], None],
        timeout: float,
    ) -> Completed:
        """Run one configuration; its output lines go to ``on_line`` and ``log_path``, as a one-shot run's."""
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=40)
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None or self._env != extra_env:
                self.close()
                process = self._start(extra_env)
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps({"config": str(config_path)}).encode() + b"\n")
                process.stdin.flush()
            except OSError as e:
                self.close()
                raise ToolError(f"the warm lm-eval process is gone: {e}") from e
            deadline = started + timeout
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8", errors="replace") as log:
                while True:
                    line = self._line(process, deadline)
                    log.write(line + "\n")
                    event = _event(line)
                    if event is not None and event.get("event") == "finished":
                        break
                    tail.append(line)
                    on_line(line)
        if not event.get("ok"):
            tail.append(str(event.get("error") or "lm-eval failed"))
        return Completed(0 if event.get("ok") else 1, time.monotonic() - started, "\n".join(tail), log_path)

    def close(self) -> None:
        """Stop the process (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        from gate.proc import kill_group

        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        kill_group(process, grace=5.0)

    def __enter__(self) -> WarmEvaluator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WarmEvaluators:
    """Up to ``size`` warm lm-eval processes, one per candidate evaluating at once (made on demand).

    A pool gates up to ``serving.max_loras`` candidates at once; one shared process would make
    their evaluations wait for each other.
    """

    def __init__(self, *, log_dir: Path, size: int) -> None:
        self.log_dir = Path(log_dir)
        self.size = max(1, size)
        self._all: list[WarmEvaluator] = []
        self._free: list[WarmEvaluator] = []
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def lease(self) -> Iterator[WarmEvaluator]:
        """A warm process of its own for the ``with`` block (waits while all ``size`` are busy)."""
        with self._cond:
            while not self._free and len(self._all) >= self.size:
                self._cond.wait()
            if self._free:
                evaluator = self._free.pop()
            else:
                evaluator = WarmEvaluator(log_dir=self.log_dir / str(len(self._all)))
                self._all.append(evaluator)
        try:
            yield evaluator
        finally:
            with self._cond:
                self._free.append(evaluator)
                self._cond.notify()

    def close(self) -> None:
        """Stop every process."""
        with self._cond:
            evaluators, self._all, self._free = list(self._all), [], []
        for evaluator in evaluators:
            evaluator.close()


def _event(line: str) -> dict[str, object] | None:
    at = line.find(_EVENT)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(_EVENT) :])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
