"""Committed lock files: every environment, per platform, installed with hashes required.

The locks under gate/locks/ are what a fresh clone builds from; their digest is the cache key,
so two machines with one key have one dependency set.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gate.cli._env import _catalog
from gate.envlock import LOCK_DIR, read_lock
from gate.envs import EnvSpec, Install, ensure, env_dir, platform_as
from gate.errors import EnvironmentBuildError

ROOT = Path(__file__).resolve().parents[2]

#: sha256 of torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl as PyTorch's CPU wheel page
#: (https://download.pytorch.org/whl/cpu/torch/) publishes it: a runner reading that page and a
#: machine with a local wheel folder must verify the same file.
OFFICIAL_TORCH_CPU_CP311 = "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"

_ENVS = ["base", "vllm", "reference", "lm-eval", "trainer-llamafactory", "trainer-unsloth", "trainer-axolotl"]


def _specs(cuda: bool) -> dict[str, EnvSpec]:
    with platform_as(cuda):
        catalog: dict[str, Callable[[], EnvSpec]] = _catalog()
        return {name: factory() for name, factory in catalog.items()}


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu", "cuda"])
def test_every_environment_has_a_committed_hashed_lock_that_satisfies_its_spec(cuda: bool) -> None:
    specs = _specs(cuda)
    assert sorted(specs) == sorted(_ENVS)
    for name, spec in specs.items():
        with platform_as(cuda):
            lock = spec.lock()  # raises when missing, unhashed or stale against the spec's pins
        assert lock.path.parent == LOCK_DIR
        assert lock.path.name == f"{name}-py{spec.python.replace('.', '')}-{'cuda' if cuda else 'cpu'}.txt"
        tracked = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "--error-unmatch", str(lock.path)], capture_output=True
        )
        assert tracked.returncode == 0, f"{lock.path.name} is not committed"
        # pip, setuptools and wheel come hashed from the lock, not from uv's unpinned --seed.
        assert {"pip", "setuptools"} <= set(lock.pins)


def test_cpu_locks_record_the_official_cpu_torch_wheel() -> None:
    for name, spec in _specs(False).items():
        with platform_as(False):
            lock = spec.lock()
        if lock.pins.get("torch") == "2.13.0+cpu" and spec.python == "3.11":
            assert OFFICIAL_TORCH_CPU_CP311 in lock.hashes["torch"], name


def test_cuda_locks_take_pypis_torch_and_the_gpu_vllm() -> None:
    specs = _specs(True)
    with platform_as(True):
        vllm = specs["vllm"].lock()
        assert vllm.pins["vllm"] == "0.26.0" and vllm.pins["torch"] == "2.11.0"
        assert "+cpu" not in specs["trainer-unsloth"].lock().pins["torch"]


def test_the_cache_key_is_the_locks_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _specs(False)["lm-eval"]
    with platform_as(False):
        before = env_dir(spec)
        locks = tmp_path / "locks"
        shutil.copytree(LOCK_DIR, locks)
        monkeypatch.setenv("GATE_LOCK_DIR", str(locks))
        assert env_dir(spec) == before  # same bytes, same key
        lock = locks / spec.lock_path.name
        lock.write_text(lock.read_text() + "# a comment changes the bytes, so the key\n")
        assert env_dir(spec) != before
        assert env_dir(spec).name == f"lm-eval-{spec.digest()[:12]}"


def test_a_lock_that_no_longer_satisfies_the_spec_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "tiny-py311-cpu.txt"
    lock.write_text("six==1.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    spec = EnvSpec(name="tiny", installs=(Install(("six==1.17.0",)),))
    # The fixture, not MonkeyPatch.context(): a test using it waits for servers booting ahead (serving.py).
    monkeypatch.setenv("GATE_LOCK_DIR", str(tmp_path))
    with platform_as(False), pytest.raises(EnvironmentBuildError, match="does not satisfy") as err:
        spec.lock()
    assert "gate env lock tiny" in str(err.value.hint)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("six==1.17.0\n", "every entry needs a pinned version and a sha256 hash"),
        ("six>=1.17\n", "not an exact pin"),
        ("six @ https://example.invalid/six.whl\n", "not an exact pin"),
    ],
)
def test_a_lock_entry_without_exact_pin_and_hash_is_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "x.txt").write_text(text)
    with pytest.raises(EnvironmentBuildError, match=message):
        read_lock(tmp_path / "x.txt")


def test_a_missing_lock_names_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError, match=r"no lock file nothing-py311-cpu\.txt") as err:
        read_lock(tmp_path / "nothing-py311-cpu.txt")
    assert "gate env lock nothing" in str(err.value.hint)


def _tiny_lock(tmp_path: Path) -> tuple[EnvSpec, Path]:
    """A real one-package lock made by `gate env lock`'s compiler (uv, offline from the warm cache)."""
    from gate.envs import lock

    spec = EnvSpec(name="tiny", installs=(Install(("six==1.17.0",)),))
    lock(spec)
    return spec, tmp_path / "locks" / "tiny-py311-cpu.txt"


def test_an_environment_is_installed_from_its_lock_with_hashes_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared uv cache stays (warm, offline); the environments go to a scratch GATE_HOME.
    monkeypatch.setenv("UV_CACHE_DIR", _uv_cache())
    monkeypatch.setenv("GATE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("GATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UV_OFFLINE", "1")
    with platform_as(False):
        spec, path = _tiny_lock(tmp_path)
        assert {"six", "pip", "setuptools", "wheel"} <= set(read_lock(path).pins)
        env = ensure(spec, quiet=True)
        assert env.lock_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert env.record()["lock_file"] == "tiny-py311-cpu.txt"
        assert env.packages["six"] == "1.17.0"
        meta = json.loads((env_dir(spec) / "gate-env.json").read_text())
        assert meta["lock_sha256"] == env.lock_sha256

        # One changed hash: a new cache key, and uv refuses the file that no longer matches.
        text = path.read_text()
        good = read_lock(path).hashes["six"]
        for h in good:
            text = text.replace(h, "f" * 64)
        path.write_text(text)
        with pytest.raises(EnvironmentBuildError, match="hashes required") as err:
            ensure(spec, quiet=True)
        assert "hash" in str(err.value.hint).lower()
        assert not (env_dir(spec) / "gate-env.json").exists()


def _uv_cache() -> str:
    import os

    from gate.envs import gate_home

    return os.environ.get("UV_CACHE_DIR") or str(gate_home() / "uv-cache")


def test_relocking_without_upgrade_reproduces_the_committed_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = tmp_path / "locks"
    shutil.copytree(LOCK_DIR, locks)
    monkeypatch.setenv("GATE_LOCK_DIR", str(locks))
    monkeypatch.setenv("UV_CACHE_DIR", _uv_cache())
    from gate.envs import lock

    with platform_as(False):
        spec = _specs(False)["lm-eval"]
        made = lock(spec)
    assert made.path.read_bytes() == (LOCK_DIR / made.path.name).read_bytes()


def test_the_locks_ship_in_the_wheel(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "build", "--wheel", "--offline", "-q", "-o", str(tmp_path)], cwd=ROOT, check=True
    )
    (wheel,) = tmp_path.glob("lora_gate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for lock in LOCK_DIR.glob("*.txt"):
        assert f"gate/locks/{lock.name}" in names
