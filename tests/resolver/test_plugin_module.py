"""The vLLM plugin module: standard library and vLLM only, installed where vLLM's plugin loader finds it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from gate.resolver._install import install_plugin, plugin_source


def test_plugin_imports_only_the_standard_library_and_vllm() -> None:
    tree = ast.parse(plugin_source().read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"asyncio", "json", "os", "re", "vllm"}, imported
    assert "gate" not in imported


def test_installed_plugin_is_an_entry_point_of_vllms_general_plugins(tmp_path: Path) -> None:
    installed = install_plugin(tmp_path)
    assert installed == tmp_path / "gate_vllm_resolver.py"
    probe = (
        "import importlib.metadata as m; "
        "print([(e.name, e.value) for e in m.entry_points(group='vllm.general_plugins')])"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert "('gate', 'gate_vllm_resolver:register')" in done.stdout
    record = next(tmp_path.glob("lora_gate_vllm_resolver-*.dist-info")) / "RECORD"
    assert "gate_vllm_resolver.py,sha256=" in record.read_text()
    install_plugin(tmp_path)  # a reinstall replaces the dist-info instead of adding a second
    assert len(list(tmp_path.glob("lora_gate_vllm_resolver-*.dist-info"))) == 1
