"""gate's LoRA resolver plugin for vLLM: serve only signed, gated adapters (runs inside vLLM).

Installed into a vLLM environment by ``gate serve-config --install-plugin`` (as the
top-level module ``gate_vllm_resolver`` with an entry point in vLLM's
``vllm.general_plugins`` group), enabled with ``VLLM_PLUGINS=gate`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, configured by the file that
``GATE_RESOLVER_CONFIG`` names. It imports only the standard library and vLLM:
every check runs in gate's own interpreter, as ``python -m gate.resolver``, and
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
    """Resolve ``NAME:VERSION`` / ``NAME@sha256:...`` through ``python -m gate.resolver``."""

    def __init__(self, config_path, gate_python, timeout_s):
        self.config_path = config_path
        self.gate_python = gate_python
        self.timeout_s = timeout_s

    async def resolve_lora(self, base_model_name, lora_name):
        if not _RELEASE.match(lora_name or ""):
            return None
        proc = await asyncio.create_subprocess_exec(
            self.gate_python,
            "-m",
            "gate.resolver",
            "--config",
            self.config_path,
            lora_name,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise GateRefused(
                f"gate refused {lora_name}: verification did not finish in {self.timeout_s} s"
            ) from None
        lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            tail = err.decode("utf-8", "replace")[-500:]
            raise GateRefused(f"gate refused {lora_name}: the resolver gave no answer ({tail})") from None
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
