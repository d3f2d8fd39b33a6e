"""The release's event stream: every step emits a timestamped event dict (and a test can pause at one)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from gate.pipeline._request import EventSink

#: Test-only: pause (so a test can SIGKILL the process) right after the event named here.
_PAUSE_ENV = "GATE_TESTONLY_PAUSE_AFTER"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Emitter:
    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self.events: list[dict[str, Any]] = []
        self.pause_after = os.environ.get(_PAUSE_ENV)

    def __call__(self, event: dict[str, Any]) -> None:
        event = {"time": _now(), **event}
        self.events.append(event)
        if self.sink is not None:
            self.sink(event)
        name = event["event"]
        keys = (name, f"{name}:{event.get('gate')}", f"{name}:{event.get('index')}")
        if self.pause_after and self.pause_after in keys:
            # Test-only hook: hold still here so a fault test can SIGKILL at exactly this step.
            self.pause_after = None
            time.sleep(600)
