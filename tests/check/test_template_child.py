"""The template renderer is a spawned child: rendering from threads never forks gate's process."""

from __future__ import annotations

import os
import threading

import pytest

from gate.templates import RenderCase, render_many


def test_templates_render_from_concurrent_threads_without_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("os.fork called: forking a threaded process is unsafe")

    monkeypatch.setattr(os, "fork", no_fork)
    results: dict[int, list[str | None]] = {}

    def render(n: int) -> None:
        cases = [RenderCase(messages=[{"role": "user", "content": f"m{n}-{i}"}]) for i in range(3)]
        results[n] = [r.text for r in render_many("{{ messages[0].content }}!", cases)]

    threads = [threading.Thread(target=render, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: [f"m{n}-{i}!" for i in range(3)] for n in range(4)}
