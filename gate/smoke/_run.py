"""The mutable state of one smoke run and the helpers every probe shares (prompts, bounded reads)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gate.contract import Contract
from gate.errors import InputError
from gate.serving import Completion, ServingRuntime
from gate.smoke._report import PROBES, REPORT_NAME, ProbeResult, SmokeReport

__all__ = ["EventSink", "SmokeRun", "adapter_dir_checked", "messages", "read_json_bounded", "render_prompts"]

EventSink = Callable[[dict[str, Any]], None]
_MAX_TOKENIZER_BYTES = 64 << 20


class SmokeRun:
    """Mutable state of one smoke run; probes append their results here."""

    def __init__(
        self,
        adapter_dir: Path,
        contract: Contract,
        base_dir: Path,
        out_dir: Path,
        on_event: EventSink | None,
        lora_name: str | None = None,
    ) -> None:
        self.adapter_dir = adapter_dir
        self.contract = contract
        self.base_dir = base_dir
        self.out_dir = out_dir
        self.on_event = on_event
        self.name = lora_name or f"gate-smoke-{uuid.uuid4().hex[:10]}"
        self.results: list[ProbeResult] = []
        self.server: ServingRuntime | None = None
        self.server_info: dict[str, Any] = {}
        self.started = time.monotonic()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._probe_start = self.started
        self.chat: dict[str, Completion] = {}
        self.completions: dict[str, Completion] = {}
        self.rendered: dict[str, str] = {}
        #: A warm parity reference (gate.smoke.ReferenceProcess) or None for a one-shot process.
        self.reference: Any = None

    def begin(self, name: str) -> None:
        self._probe_start = time.monotonic()
        self._emit({"probe": name, "status": "running"})

    def elapsed(self) -> float:
        return time.monotonic() - self._probe_start

    def add(self, result: ProbeResult) -> None:
        self.results.append(result)
        self._emit({"probe": result.name, "status": result.status, "message": result.message})

    def ok(self, name: str) -> bool:
        return any(r.name == name and r.passed for r in self.results)

    def skip_rest(self, reason: str) -> None:
        done = {r.name for r in self.results}
        for name in PROBES:
            if name not in done:
                self.add(ProbeResult(name, "skipped", reason))

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event({"gate": "smoke", **event})

    def finish(self) -> SmokeReport:
        self.skip_rest("not run")
        order = {n: i for i, n in enumerate(PROBES)}
        probes = tuple(sorted(self.results, key=lambda r: order.get(r.name, len(order))))
        report = SmokeReport(
            adapter_dir=self.adapter_dir,
            contract_path=self.contract.source_path,
            contract_sha256=self.contract.sha256,
            base_dir=self.base_dir,
            base_identity=self.contract.base_model.identity,
            server=self.server_info,
            adapter_name=self.name,
            probes=probes,
            started_at=self.started_at,
            seconds=time.monotonic() - self.started,
            report_path=self.out_dir / REPORT_NAME,
        )
        report.write(self.out_dir / REPORT_NAME)
        self._emit({"probe": None, "status": "done", "passed": report.passed})
        return report


def messages(items: Sequence[Any]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in items]


def render_prompts(run: SmokeRun) -> dict[str, str]:
    """The contract's smoke prompts rendered with the contract's template (what /v1/completions gets)."""
    from gate.templates import RenderCase, render_many

    if run.rendered:
        return run.rendered
    prompts = run.contract.smoke.prompts
    variables = template_variables(run.base_dir)
    results = render_many(
        run.contract.prompt.chat_template,
        [
            RenderCase(messages=messages(p.messages), add_generation_prompt=True, variables=variables)
            for p in prompts
        ],
    )
    for prompt, result in zip(prompts, results, strict=True):
        if not result.ok or result.text is None:
            raise InputError(
                f"the contract's chat template does not render smoke prompt {prompt.name!r}: "
                f"{result.error} {result.detail}"
            )
        run.rendered[prompt.name] = result.text
    return run.rendered


def adapter_dir_checked(path: Path) -> Path:
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: the adapter directory is a symlink", hint="pass the real directory")
    if not path.is_dir():
        raise InputError(f"{path}: no such adapter directory")
    config = path / "adapter_config.json"
    if config.is_symlink() or not config.is_file():
        raise InputError(f"{path}: not an adapter directory (no adapter_config.json)")
    return path.resolve()


def read_json_bounded(path: Path, limit: int) -> Any:
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        return None
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        return None


def template_variables(base_dir: Path) -> dict[str, str]:
    """The special-token variables transformers passes to chat templates (bos_token, eos_token...)."""
    config = read_json_bounded(base_dir / "tokenizer_config.json", 1 << 20)
    variables: dict[str, str] = {}
    if isinstance(config, dict):
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                variables[key] = value
    return variables


def control_markers(base_dir: Path, contract: Contract) -> set[str]:
    """The base tokenizer's special tokens plus the contract's end-of-turn marker."""
    markers = {contract.prompt.end_of_turn}
    tokenizer = read_json_bounded(base_dir / "tokenizer.json", _MAX_TOKENIZER_BYTES)
    if isinstance(tokenizer, dict):
        for token in tokenizer.get("added_tokens") or []:
            if isinstance(token, dict) and token.get("special") and isinstance(token.get("content"), str):
                markers.add(token["content"])
    config = read_json_bounded(base_dir / "tokenizer_config.json", 1 << 20)
    if isinstance(config, dict):
        for token in (config.get("added_tokens_decoder") or {}).values():
            if isinstance(token, dict) and token.get("special") and isinstance(token.get("content"), str):
                markers.add(token["content"])
    return {m for m in markers if m.strip()}
