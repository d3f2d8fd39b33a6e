"""Installing the vLLM plugin: the module and a dist-info that puts it in vLLM's plugin group.

The plugin is one standard-library module; it is installed the way an installer
would (module file, ``METADATA``, ``entry_points.txt``, ``RECORD`` with hashes)
into a site-packages directory: gate's own vLLM environment, another vLLM
installation's, or any directory put on that installation's ``PYTHONPATH``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from gate import __version__
from gate.errors import EnvironmentBuildError

__all__ = ["DIST_NAME", "PLUGIN_MODULE", "env_site_packages", "install_plugin", "plugin_source"]

PLUGIN_MODULE = "gate_vllm_resolver"
DIST_NAME = "lora_gate_vllm_resolver"
#: The name ``VLLM_PLUGINS`` selects it by.
PLUGIN_NAME = "gate"


def plugin_source() -> Path:
    """The plugin module shipped with gate."""
    return Path(__file__).resolve().parents[1] / "_envscripts" / f"{PLUGIN_MODULE}.py"


def _record_line(rel: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}"


def install_plugin(site_packages: Path) -> Path:
    """Install the plugin into ``site_packages``; return the installed module's path."""
    if not site_packages.is_dir():
        raise EnvironmentBuildError(f"{site_packages} is not a directory to install the plugin into")
    dist = site_packages / f"{DIST_NAME}-{__version__}.dist-info"
    for old in site_packages.glob(f"{DIST_NAME}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    dist.mkdir()
    files = {
        f"{PLUGIN_MODULE}.py": plugin_source().read_bytes(),
        f"{dist.name}/METADATA": (
            f"Metadata-Version: 2.1\nName: {DIST_NAME.replace('_', '-')}\nVersion: {__version__}\n"
            "Summary: gate's vLLM LoRA resolver: serve only signed, gated adapters\n"
        ).encode(),
        f"{dist.name}/entry_points.txt": (
            f"[vllm.general_plugins]\n{PLUGIN_NAME} = {PLUGIN_MODULE}:register\n"
        ).encode(),
        f"{dist.name}/INSTALLER": b"lora-gate\n",
    }
    for rel, data in files.items():
        (site_packages / rel).write_bytes(data)
    record = [_record_line(rel, data) for rel, data in files.items()] + [f"{dist.name}/RECORD,,"]
    (dist / "RECORD").write_text("\n".join(record) + "\n")
    return site_packages / f"{PLUGIN_MODULE}.py"


def env_site_packages(python: Path) -> Path:
    """The site-packages directory of the interpreter ``python``."""
    done = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise EnvironmentBuildError(f"{python} did not report its site-packages: {done.stderr[-300:]}")
    return Path(done.stdout.strip())
