"""A warm transformers + PEFT reference: one long-lived process per pool, the base loaded once.

Parity used to start a fresh process and load the base for every adapter (14.3 of
16 s per adapter on an H200). This process loads the base once on the device the
server uses; each request applies one adapter, scores, and removes it again
(``gate/_envscripts/reference_greedy.py --serve``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gate.errors import ServerError
from gate.proc import LineChild
from gate.serving._env import reference_env_spec

__all__ = ["REFERENCE_SCRIPT", "ReferenceProcess", "check_reference_result"]

REFERENCE_SCRIPT = Path(__file__).resolve().parent.parent / "_envscripts" / "reference_greedy.py"
_MAX_LINE = 16 << 20


def check_reference_result(data: Any, count: int, where: str) -> dict[str, Any]:
    """The reference's result for ``count`` prompts, or a :class:`ServerError` saying what went wrong."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        raise ServerError(f"the transformers + PEFT reference failed: {data['error']}", hint=where)
    if not isinstance(data, dict) or len(data.get("prompts") or []) != count:
        raise ServerError(f"the reference wrote an unusable result ({where})")
    return data


class ReferenceProcess:
    """One long-lived transformers + PEFT process with the base loaded once (see the module docstring).

    Requests are serialized (one model, one forward at a time); a process that dies or stalls
    is restarted on the next request.

    Example::

        with ReferenceProcess(base_dir, "float32", log_dir=Path("logs")) as ref:
            ref.score({"adapter_dir": "...", "prompts": [...]})
    """

    def __init__(self, base_dir: Path, dtype: str, *, log_dir: Path, timeout: float = 900.0) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.dtype = dtype
        self.log_dir = Path(log_dir)
        self.timeout = timeout
        self.starts = 0
        self._child = LineChild(
            "the warm reference", self.log_dir / "reference.log", error=ServerError, max_line=_MAX_LINE
        )
        self._lock = threading.Lock()

    def _start(self) -> None:
        from gate.envs import ensure

        env = ensure(reference_env_spec())
        self._child.start(
            [str(env.python), str(REFERENCE_SCRIPT), "--serve", str(self.base_dir), self.dtype], env.environ()
        )
        self.starts += 1
        ready = self._read_answer()
        if not (isinstance(ready, dict) and ready.get("ready")):
            self.close()
            raise ServerError("the warm reference did not start", hint=f"log {self._child.log_path}")

    def _read_answer(self) -> Any:
        line = self._child.read_line(time.monotonic() + self.timeout)
        try:
            return json.loads(line)
        except ValueError as e:
            self.close()
            raise ServerError(f"the warm reference wrote invalid JSON: {e}") from e

    def score(self, request: dict[str, Any]) -> dict[str, Any]:
        """Score one adapter's prompts (the request format of ``reference_greedy.py``)."""
        with self._lock:
            if not self._child.alive():
                self._start()
            self._child.write_line(json.dumps(request).encode())
            data = self._read_answer()
        return check_reference_result(data, len(request["prompts"]), str(self._child.log_path))

    def close(self) -> None:
        """Stop the process (idempotent)."""
        self._child.close()

    def __enter__(self) -> ReferenceProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
