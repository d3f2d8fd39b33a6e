"""The machine a job starts on: what a fresh GitHub-hosted runner has, and nothing of this one's.

Every job gets a new HOME, workspace, temp and tool-cache folder and an environment built only
from the image: the PATH it names, the variables it names (the machine's trust store and proxy,
so the network behaves as it does here) and nothing inherited (no ``PIP_FIND_LINKS``, no gate
caches or settings, no virtual environment, no extra Pythons on PATH). Anything a test adds
(gate preinstalled, a warm uv cache) is an explicit ``env``/``path`` entry of its image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

#: Variables copied from this machine: its certificate store and proxy (a runner has its own).
_TRUST = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


@dataclass(frozen=True)
class RunnerImage:
    """``path``: PATH entries (the system's); ``env``: the only variables a job inherits;
    ``interpreters``: what setup-python may put on PATH, by version (default: gate's own lookup
    of this machine's interpreters, ``gate.envs.find_interpreter``)."""

    path: tuple[str, ...] = SYSTEM_PATH
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    interpreters: Mapping[str, str] | None = None

    @classmethod
    def bare(cls, **env: str) -> RunnerImage:
        """A fresh ``ubuntu-latest``: system PATH, C.UTF-8, this machine's trust store and proxy."""
        base = {"LANG": "C.UTF-8"}
        base.update({k: os.environ[k] for k in _TRUST if k in os.environ})
        if "SSL_CERT_FILE" not in base and "PIP_CERT" in base:
            # uv reads SSL_CERT_FILE; pip's setting names the same bundle.
            base["SSL_CERT_FILE"] = base["PIP_CERT"]
        base.update(env)
        return cls(env=MappingProxyType(base))

    def with_path(self, *front: str) -> RunnerImage:
        """The same image with ``front`` before its PATH (a tool the image has preinstalled)."""
        return replace(self, path=(*front, *self.path))

    def with_env(self, **env: str) -> RunnerImage:
        return replace(self, env=MappingProxyType({**self.env, **env}))

    def interpreter(self, version: str) -> str:
        if self.interpreters is not None:
            if version not in self.interpreters:
                raise LookupError(f"setup-python: the runner image has no Python {version}")
            return self.interpreters[version]
        from gate.envs import find_interpreter

        return str(find_interpreter(version))
