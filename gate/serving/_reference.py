"""A warm transformers + PEFT reference: one long-lived process per pool, the base loaded once.

Parity used to start a fresh process and load the base for every adapter (14.3 of
16 s per adapter on an H200). This process loads the base once on the device the
server uses; each request applies one adapter, scores, and removes it again
(``gate/_envscripts/reference_greedy.py --serve``).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gate.errors import ServerError
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
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        from gate.envs import ensure

        env = ensure(reference_env_spec())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / "reference.log", "ab")  # noqa: SIM115 - owned by the child's lifetime
        try:
            process = subprocess.Popen(
                [str(env.python), str(REFERENCE_SCRIPT), "--serve", str(self.base_dir), self.dtype],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env.environ(),
                start_new_session=True,
            )
        finally:
            log.close()
        self._process = process
        self.starts += 1
        ready = self._read_line(process, self.timeout)
        if not (isinstance(ready, dict) and ready.get("ready")):
            self.close()
            raise ServerError(
                "the warm reference did not start", hint=f"log {self.log_dir / 'reference.log'}"
            )
        return process

    def _read_line(self, process: subprocess.Popen[bytes], timeout: float) -> Any:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        size = 0
        fd = process.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ServerError(f"the warm reference gave no answer within {timeout:.0f}s and was stopped")
            ready, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not ready:
                if process.poll() is not None:
                    self.close()
                    raise ServerError(
                        f"the warm reference exited with status {process.returncode}",
                        hint=f"log {self.log_dir / 'reference.log'}",
                    )
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.close()
                raise ServerError("the warm reference closed its output", hint=f"log {self.log_dir}")
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_LINE:
                self.close()
                raise ServerError("the warm reference wrote an over-long answer")
            if chunk.endswith(b"\n"):
                try:
                    return json.loads(b"".join(chunks))
                except ValueError as e:
                    self.close()
                    raise ServerError(f"the warm reference wrote invalid JSON: {e}") from e

    def score(self, request: dict[str, Any]) -> dict[str, Any]:
        """Score one adapter's prompts (the request format of ``reference_greedy.py``)."""
        with self._lock:
            process = self._process if self._process and self._process.poll() is None else self._start()
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
            except OSError as e:
                self.close()
                raise ServerError(f"the warm reference is gone: {e}") from e
            data = self._read_line(process, self.timeout)
        return check_reference_result(data, len(request["prompts"]), str(self.log_dir / "reference.log"))

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

    def __enter__(self) -> ReferenceProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
