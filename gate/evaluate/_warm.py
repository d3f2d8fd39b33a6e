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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from gate.errors import ToolError
from gate.evaluate._env import lm_eval_env_spec
from gate.proc import Completed, LineChild

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
        self._child = LineChild(
            "the warm lm-eval process", self.log_dir / "lm-eval-warm.log", error=ToolError, max_line=_MAX_LINE
        )
        self._env: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        """Where the process's stderr (lm-eval's own messages and tracebacks) goes."""
        return self._child.log_path

    def _start(self, extra_env: dict[str, str]) -> None:
        from gate.envs import ensure

        env = ensure(lm_eval_env_spec())
        self._child.start([str(env.python), str(_SCRIPT), "--serve"], env.environ(extra_env))
        self._env = dict(extra_env)
        self.starts += 1
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            event = _event(self._line(deadline))
            if event is not None and event.get("event") == "ready":
                return

    def _line(self, deadline: float) -> str:
        return self._child.read_line(deadline).decode("utf-8", errors="replace")

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
            if not self._child.alive() or self._env != extra_env:
                self._start(extra_env)
            self._child.write_line(json.dumps({"config": str(config_path)}).encode())
            deadline = started + timeout
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8", errors="replace") as log:
                while True:
                    line = self._line(deadline)
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
        self._child.close()

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
