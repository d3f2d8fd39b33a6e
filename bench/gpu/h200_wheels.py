"""Fetch the wheels an offline CPython 3.12 / x86-64 host lacks for some top-level requirements.

Walks the requirements breadth-first from each wheel's METADATA (markers evaluated
for CPython 3.12 on Linux), skipping every distribution the host already has
(a list of names, one a line) unless it is pinned on the command line, and any
named in SKIP. Each wheel is fetched with ``pip download --no-deps`` for manylinux
x86-64; a requirement with no wheel is reported (build it with ``pip wheel``).

    python bench/gpu/h200_wheels.py OUT HOST_NAMES SKIP[,SKIP...] REQ [REQ ...]

Used by bench/gpu/pack_h200.sh.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
    "any",
)
PIP = ["--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
PIP += [arg for p in PLATFORMS for arg in ("--platform", p)]


def _wheel_of(out: Path, name: str, before: set[Path]) -> Path:
    new = [f for f in out.glob("*.whl") if f not in before]
    if new:
        return new[0]
    return next(f for f in out.glob("*.whl") if canonicalize_name(re.split(r"-\d", f.name)[0]) == name)


def _requires(wheel: Path, extras: set[str]) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    found = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is None or any(
            req.marker.evaluate({**MARKERS, "extra": extra}) for extra in ("", *extras)
        ):
            found.append(req)
    return found


def main() -> int:
    out, host_file, skip_arg, *tops = sys.argv[1:]
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    have = {canonicalize_name(x) for x in Path(host_file).read_text().split()}
    skip = {canonicalize_name(x) for x in skip_arg.split(",") if x}
    pins = {canonicalize_name(Requirement(t).name): t for t in tops}
    queue = [Requirement(t) for t in tops]
    fetched: dict[str, Path | None] = {}
    failed = 0
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in fetched or name in skip or (name in have and name not in pins):
            continue
        spec = pins.get(name, str(req).split(";")[0])
        before = set(target.glob("*.whl"))
        run = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", *PIP, "-d", str(target), spec],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            print(f"NO WHEEL {spec}: {run.stderr.strip().splitlines()[-1:]}")
            fetched[name] = None
            failed += 1
            continue
        wheel = _wheel_of(target, name, before)
        fetched[name] = wheel
        print(f"{name:30} {wheel.name} {wheel.stat().st_size >> 10} KiB <- {req}")
        queue.extend(_requires(wheel, set(req.extras)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
