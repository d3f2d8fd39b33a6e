"""gate's LoRA resolver plugin for vLLM: serve only signed, gated adapters (runs inside vLLM).

Installed into a vLLM environment by ``gate serve-config --install-plugin`` (as the
top-level module ``gate_vllm_resolver`` with an entry point in vLLM's
``vllm.general_plugins`` group), enabled with ``VLLM_PLUGINS=gate`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, configured by the file that
``GATE_RESOLVER_CONFIG`` names. It imports only the standard library and vLLM:
every check runs in gate's own interpreter, in one long-lived
``python -m gate.resolver --serve`` worker, and
what vLLM receives is either the path of a verified bundle or a refusal
(a ValueError, which vLLM answers as HTTP 400 with its text).

Names that are not gate release names (no ``:VERSION`` or ``@sha256:``) are left
to other resolvers; an operator who wants only gated adapters enables no other.
"""

import asyncio
import json
import os
import re

from vllm.logger import init_logger
from vllm.lora.request import LoRARequest
from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

# vLLM's own logger: refusals land in the server log beside its other lines.
logger = init_logger("vllm.gate_resolver")
_RELEASE = re.compile(
    r"^[a-z0-9][a-z0-9._-]{0,127}(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$"
)


class GateRefused(ValueError):
    """A request named a release that gate did not verify (the message says which check and digest)."""


class GateResolver(LoRAResolver):
    """Resolve ``NAME:VERSION`` / ``NAME@sha256:...`` through a ``python -m gate.resolver --serve`` worker."""

    def __init__(self, config_path, gate_python, timeout_s):
        self.config_path = config_path
        self.gate_python = gate_python
        self.timeout_s = timeout_s
        self._worker = None
        self._lock = asyncio.Lock()

    async def _start(self):
        # One long-lived worker: an interpreter start and gate's imports cost ~1 s, a resolution far less.
        return await asyncio.create_subprocess_exec(
            self.gate_python,
            "-m",
            "gate.resolver",
            "--config",
            self.config_path,
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=1 << 20,
        )

    async def _ask(self, lora_name):
        async with self._lock:
            if self._worker is None or self._worker.returncode is not None:
                self._worker = await self._start()
            worker = self._worker
            try:
                worker.stdin.write(lora_name.encode() + b"\n")
                await worker.stdin.drain()
                line = await asyncio.wait_for(worker.stdout.readline(), timeout=self.timeout_s)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                worker.kill()
                self._worker = None
                raise GateRefused(
                    f"gate refused {lora_name}: verification did not finish in {self.timeout_s} s"
                ) from None
            if not line:
                self._worker = None
                raise GateRefused(f"gate refused {lora_name}: the resolver worker exited")
            return line

    async def resolve_lora(self, base_model_name, lora_name):
        if not _RELEASE.match(lora_name or ""):
            return None
        line = await self._ask(lora_name)
        try:
            result = json.loads(line)
        except ValueError:
            raise GateRefused(f"gate refused {lora_name}: the resolver gave no answer") from None
        if not result.get("ok"):
            message = f"gate refused {lora_name}: {result.get('check')}: {result.get('reason')}" + (
                f" (digest {result['digest']})" if result.get("digest") else ""
            )
            logger.warning("%s", message)
            raise GateRefused(message)
        logger.info("gate verified %s (%s) -> %s", lora_name, result.get("digest"), result.get("path"))
        return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=result["path"])


def register():
    """vLLM's general-plugin hook: register the resolver when a configuration is named."""
    path = os.environ.get("GATE_RESOLVER_CONFIG")
    if not path:
        logger.warning("gate resolver plugin loaded but GATE_RESOLVER_CONFIG is not set: not registered")
        return
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    resolver = GateResolver(path, config["gate_python"], float(config.get("timeout_s", 120)))
    LoRAResolverRegistry.register_resolver("gate", resolver)
