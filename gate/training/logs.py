"""Reading a toolkit's output: per-step losses and final metrics out of its log."""

from __future__ import annotations

import ast
import contextlib
import json
import re
from typing import Any

from gate.training.record import StepLoss

_DICT = re.compile(r"\{['\"][^{}]*\}")
_GATE_EVENT = "GATE_EVENT "


class LogParser:
    """Pull per-step losses and final metrics out of a Hugging Face Trainer's log.

    All three toolkits train with transformers' Trainer, which prints one Python
    dict per logging step (``{'loss': 2.31, 'learning_rate': ...}``) and one with
    ``train_runtime`` at the end. Scripts gate ships may print ``GATE_EVENT {json}``.
    """

    def __init__(self) -> None:
        self.steps: list[StepLoss] = []
        self.final: dict[str, float] = {}
        self.tokens_seen: int | None = None
        self.peak_gpu_bytes: int | None = None
        self._structured = False

    def feed(self, line: str) -> StepLoss | None:
        """Parse one output line; return the step it completed, if any."""
        got: StepLoss | None = None
        for part in line.split("\r"):
            event = self._parse(part)
            if event is not None:
                got = event
        return got

    def _parse(self, text: str) -> StepLoss | None:
        if _GATE_EVENT in text:
            try:
                data = json.loads(text.split(_GATE_EVENT, 1)[1])
            except ValueError:
                return None
            if isinstance(data, dict):
                self._structured = True
                return self._record(data)
            return None
        if self._structured:
            # The script reports full-precision events; the Trainer's rounded dicts repeat them.
            return None
        for m in _DICT.finditer(text):
            try:
                data = ast.literal_eval(m.group(0))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(data, dict):
                step = self._record(data)
                if step is not None:
                    return step
        return None

    def _record(self, data: dict[str, Any]) -> StepLoss | None:
        nums: dict[str, float] = {}
        for k, v in data.items():
            with contextlib.suppress(TypeError, ValueError):
                nums[str(k)] = float(v)
        if "peak_gpu_memory_bytes" in nums:
            self.peak_gpu_bytes = int(nums["peak_gpu_memory_bytes"])
        if "num_input_tokens_seen" in nums:
            self.tokens_seen = int(nums["num_input_tokens_seen"])
        if "train_runtime" in nums:
            self.final.update(nums)
        if "loss" in nums and "eval_loss" not in nums:
            step = int(nums["step"]) if "step" in nums else len(self.steps) + 1
            rec = StepLoss(step=step, loss=nums["loss"], learning_rate=nums.get("learning_rate"))
            if self.steps and self.steps[-1].step == step:
                # The same step printed twice (rounded dict, then a full-precision event): keep the last.
                self.steps[-1] = rec
            else:
                self.steps.append(rec)
            return rec
        return None
