"""Isolated environments for the heavy stacks, created, pinned and cached with uv.

One helper manages every environment gate needs: the base-model converter,
vLLM, each training toolkit, lm-eval. An environment is described by an
:class:`EnvSpec` (top-level pins, Python version, post-install fixes) and installed
from its committed lock (gate/envlock.py: every distribution pinned with hashes,
one lock per environment, Python and platform) with hashes required. The lock's
digest (with the post-install fixes) names a directory under ``$GATE_HOME/envs``;
a directory is complete only once its ``gate-env.json`` marker exists, so an
interrupted build is detected and rebuilt, and a second caller finds the cached
one without reinstalling.

Example::

    spec = EnvSpec(name="base", python="3.11", installs=(Install(("gguf==0.19.0",)),))
    env = ensure(spec)
    env.run_python_script(script, args)

``GATE_PYTHON_<NAME>`` (e.g. ``GATE_PYTHON_VLLM=/usr/bin/python3``) points gate at
an interpreter that already has the stack, as on an offline GPU host.
"""

from __future__ import annotations

from gate.envs._cache import build_info, ensure, env_dir, load, lock
from gate.envs._host import (
    file_lock,
    find_interpreter,
    find_links,
    gate_home,
    has_cuda,
    platform_as,
    torch_requirement,
)
from gate.envs._reference import reference_env_spec
from gate.envs._spec import Env, EnvSpec, Install

__all__ = [
    "Env",
    "EnvSpec",
    "Install",
    "build_info",
    "ensure",
    "env_dir",
    "file_lock",
    "find_interpreter",
    "find_links",
    "gate_home",
    "has_cuda",
    "load",
    "lock",
    "platform_as",
    "reference_env_spec",
    "torch_requirement",
]
