"""Render chat templates the way serving does, without trusting them.

Chat templates are Jinja code shipped inside adapter directories, so gate treats
them as hostile: they are rendered in Jinja's immutable sandbox (no attribute
tricks, no mutation of the messages) inside a fresh child interpreter with a
memory limit, a hard wall-clock deadline and an output-size limit. A template
that loops forever, allocates without bound or reaches for ``__class__`` yields
a :class:`RenderResult` with an error kind, never a hang and never code run in
gate's own process. The child is spawned, not forked: gate renders from threaded
processes (the service's concurrent releases), where a fork copies locks other
threads hold and libraries refuse it (filelock raises while a lock changes hands).

The environment mirrors the one transformers' ``apply_chat_template`` uses (and
so vLLM): ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``tojson`` and
``raise_exception``.

Example::

    from gate.templates import RenderCase, render_many

    [result] = render_many(template, [RenderCase(messages=[{"role": "user", "content": "Hi"}])])
    print(result.text if result.ok else result.error)
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import jinja2
import jinja2.exceptions
import jinja2.ext
import jinja2.runtime
import jinja2.sandbox

from gate.errors import Error

__all__ = ["RenderCase", "RenderError", "RenderResult", "render_many", "sandbox_environment"]

#: Why a render failed: a Jinja syntax or runtime error, a sandbox violation, or a limit hit.
RenderError = Literal["invalid", "unsafe", "timeout", "too_large"]

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_OUTPUT = 1 << 20
# Address space the child may add on top of what it maps once its imports are done.
_CHILD_EXTRA_MEMORY = 512 << 20
# Starting an interpreter is not rendering: a loaded host gets this long before the deadline starts.
_START_TIMEOUT_S = 60.0
_READY = b"R"
_GATE_ROOT = str(Path(__file__).resolve().parents[1])
_MAX_POW_EXPONENT = 4096


@dataclass(frozen=True)
class RenderCase:
    """One rendering: the messages and the variables a server passes."""

    messages: Sequence[Mapping[str, Any]]
    add_generation_prompt: bool = True
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderResult:
    """The rendered text, or why there is none."""

    text: str | None = None
    error: RenderError | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the template rendered."""
        return self.error is None


class _LimitExceeded(Exception):
    pass


class _GateSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on operators that can allocate without bound."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, max_output: int) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        self.max_output = max_output

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POW_EXPONENT:
            raise _LimitExceeded(f"exponent {right} is too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and len(seq) * n > self.max_output:
                    raise _LimitExceeded(f"repetition would make {len(seq) * n} items")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def sandbox_environment(max_output: int = DEFAULT_MAX_OUTPUT) -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """The sandboxed Jinja environment chat templates are compiled in (no loader: no includes)."""
    env = _GateSandbox(max_output)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env


def _render_one(template: jinja2.Template, case: RenderCase, limit: int) -> RenderResult:
    variables = {
        **case.variables,
        "messages": case.messages,
        "add_generation_prompt": case.add_generation_prompt,
    }
    try:
        text = template.render(**variables)
    except jinja2.exceptions.SecurityError as e:
        return RenderResult(error="unsafe", detail=str(e)[:300])
    except (_LimitExceeded, MemoryError) as e:
        return RenderResult(error="too_large", detail=str(e)[:300] or "out of memory")
    except RecursionError:
        return RenderResult(error="invalid", detail="recursion too deep")
    except Exception as e:  # a template can raise anything its filters raise
        return RenderResult(error="invalid", detail=f"{type(e).__name__}: {e}"[:300])
    if len(text) > limit:
        return RenderResult(error="too_large", detail=f"output of {len(text)} characters exceeds {limit}")
    return RenderResult(text=text)


def _render_all(source: str, cases: Sequence[RenderCase], limit: int) -> list[RenderResult]:
    env = sandbox_environment(limit)
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        bad = RenderResult(error="invalid", detail=f"syntax error on line {e.lineno}: {e.message}")
        return [bad for _ in cases]
    except (RecursionError, MemoryError) as e:
        bad = RenderResult(error="invalid", detail=f"cannot compile: {type(e).__name__}")
        return [bad for _ in cases]
    return [_render_one(template, case, limit) for case in cases]


def _limit_child_memory() -> None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[0])
        current = pages * os.sysconf("SC_PAGE_SIZE")
        cap = current + _CHILD_EXTRA_MEMORY
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):  # no /proc: the deadline still bounds the child
        pass


def _child(source: str, cases: Sequence[RenderCase], limit: int, fd: int) -> NoReturn:
    code = 0
    try:
        _limit_child_memory()
        results = _render_all(source, cases, limit)
        payload = json.dumps([[r.text, r.error, r.detail] for r in results]).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _serve() -> NoReturn:  # pragma: no cover - runs in the child
    """The child's side: say ready, read one request (JSON on stdin), write the results, exit."""
    os.write(1, _READY)
    request = json.loads(sys.stdin.buffer.read())
    cases = [RenderCase(messages=m, add_generation_prompt=g, variables=v) for m, g, v in request["cases"]]
    _child(request["source"], cases, int(request["limit"]), 1)


def _spawn(request: bytes) -> subprocess.Popen[bytes]:
    """Start the renderer and hand it ``request``, once it has imported what it needs."""
    code = f"import sys; sys.path.insert(0, {_GATE_ROOT!r}); from gate.templates import _serve; _serve()"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert child.stdin is not None and child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], _START_TIMEOUT_S)
    if not ready or os.read(child.stdout.fileno(), 1) != _READY:
        child.kill()
        child.wait()
        raise Error(
            f"the template renderer did not start within {_START_TIMEOUT_S:g} s",
            hint=f"check that {sys.executable} can import jinja2",
        )
    try:
        child.stdin.write(request)
        child.stdin.close()
    except OSError:  # it died after saying ready: the read below reports it
        pass
    return child


def render_many(
    source: str,
    cases: Sequence[RenderCase],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> list[RenderResult]:
    """Render ``source`` for every case in one sandboxed child; the child dies at ``timeout``.

    Every case gets a result; a child killed at the deadline (or dying of its
    memory limit) gives every case the error ``timeout`` / ``too_large``.
    """
    if not cases:
        return []
    request = json.dumps(
        {
            "source": source,
            "limit": max_output,
            "cases": [[c.messages, c.add_generation_prompt, c.variables] for c in cases],
        },
        default=str,
    ).encode()
    child = _spawn(request)
    assert child.stdout is not None
    read_fd = child.stdout.fileno()
    # The JSON of the results is bounded by the cases' output limit (plus escaping).
    budget = len(cases) * (max_output * 6 + 4096)
    chunks: list[bytes] = []
    received = 0
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            received += len(chunk)
            if received > budget:
                timed_out = True
                break
            chunks.append(chunk)
    finally:
        if timed_out:
            os.killpg(child.pid, signal.SIGKILL)
        child.stdout.close()
        status = child.wait()
    if timed_out:
        detail = f"rendering did not finish within {timeout:g} s (killed)"
        return [RenderResult(error="timeout", detail=detail) for _ in cases]
    try:
        rows = json.loads(b"".join(chunks))
    except ValueError:
        why = f"renderer exited abnormally (status {status}); memory limit likely hit"
        return [RenderResult(error="too_large", detail=why) for _ in cases]
    return [RenderResult(text=t, error=e, detail=d) for t, e, d in rows]
