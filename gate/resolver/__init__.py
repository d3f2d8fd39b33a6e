"""Verify on load: resolve a request for ``NAME:VERSION`` to a signed, gated adapter, or refuse it.

vLLM asks its LoRA resolver plugins for an adapter the first time a request
names one. gate's plugin (``gate/_envscripts/gate_vllm_resolver.py``, installed
into a vLLM environment by ``gate serve-config --install-plugin``) answers with
a ``python -m gate.resolver --config FILE --serve`` worker, which runs :func:`resolve`: the
name must be allowed, the release not revoked, the bundle pulled by digest with
gate's verify-first pull (signature under the pinned signer, every file against
its signed digest, a passed verdict under the pinned contract), gated for the
base this server serves; only then is its path in the content-addressed cache
handed to vLLM.

Example::

    config = ResolverConfig.from_file(Path("resolver.json"))
    print(resolve(config, "support-bot:v3").to_dict())
"""

from __future__ import annotations

from gate.resolver._config import CONFIG_ENV, ResolverConfig, Signer
from gate.resolver._resolve import Resolution, parse_request, resolve

__all__ = ["CONFIG_ENV", "Resolution", "ResolverConfig", "Signer", "parse_request", "resolve"]
