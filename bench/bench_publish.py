"""Sign + publish throughput against ``sha256sum`` of the same files, and re-publish upload bytes.

The baseline is the disk-read limit measured in the same run: ``sha256sum`` over
every file of the bundle (page cache warmed equally for all measurements). Then:
signing (model-signing, per-file sha256), publishing to an on-disk OCI layout,
and publishing to a real Debian docker-registry on loopback; finally the same
unchanged bundle is published again and the bytes uploaded are counted.

    python bench/bench_publish.py [--size-mb 256] [--repeat 3]

Writes bench/results/publish.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate import bundle as layout  # noqa: E402
from gate.oci import parse_ref, publish  # noqa: E402
from gate.signing import SigningConfig, generate_key, sign_bundle  # noqa: E402
from tests.fixtures.registry import running_registry  # noqa: E402


def _build_bundle(root: Path, size_mb: int) -> None:
    """A bundle shaped like a real one: a large weights file, small config, reports and a verdict."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "gate" / "reports").mkdir(parents=True)
    # A real safetensors file (publishing reads its header for the ModelPack config): 1 MiB tensors.
    from safetensors.numpy import save_file

    tensors = {f"t{i}": rng.standard_normal(1 << 18, dtype=np.float32) for i in range(size_mb)}
    save_file(tensors, str(root / "adapter_model.safetensors"))
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    for name, rel in layout.REPORTS.items():
        (root / rel).write_text(json.dumps({"gate": name, "passed": True}))
    (root / layout.RUN_RECORD).write_text("{}")
    (root / layout.CONTRACT).write_text("name: bench\n")
    (root / layout.VERDICT).write_text(json.dumps({"created_at": "2026-11-28T00:00:00+00:00"}))


def _timed(fn: Callable[[], object], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256, help="size of the weights file")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gate-bench-publish-"))
    try:
        bundle = work / "bundle"
        _build_bundle(bundle, args.size_mb)
        generate_key(work / "k.pem", work / "k.pub")
        files = [str(bundle / f.path) for f in layout.list_files(bundle, with_digests=False)]
        total = sum(os.path.getsize(f) for f in files)

        def sha256sum() -> None:
            subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)

        def cat() -> None:
            subprocess.run(["cat", *files], check=True, stdout=subprocess.DEVNULL)

        sha256sum()  # warm the page cache so every measurement reads from the same place
        t_sha = _timed(sha256sum, args.repeat)
        t_cat = _timed(cat, args.repeat)
        signing = SigningConfig(method="key", private_key=work / "k.pem")
        t_sign = _timed(lambda: sign_bundle(bundle, signing), args.repeat)

        layout_dir = work / "layout"

        def fresh_layout() -> None:
            shutil.rmtree(layout_dir, ignore_errors=True)

        t_layout = _timed(
            lambda: publish(bundle, parse_ref(f"oci-layout://{layout_dir}:v1")), args.repeat, fresh_layout
        )

        with running_registry(work / "registry") as reg:
            os.environ.update(reg.env())
            counter = iter(range(1000))
            repos: list[str] = []

            def fresh_repo() -> None:
                repos.append(f"bench/run{next(counter)}")

            t_registry = _timed(
                lambda: publish(bundle, parse_ref(reg.ref(repos[-1], "v1"))), args.repeat, fresh_repo
            )
            # Re-publish the same, unchanged bundle to the same repository: nothing to upload.
            first = publish(bundle, parse_ref(reg.ref("bench/twice", "v1")))
            second = publish(bundle, parse_ref(reg.ref("bench/twice", "v1")))

        mb = total / 1e6
        result = {
            "bundle_bytes": total,
            "files": len(files),
            "repeat": args.repeat,
            "seconds": {
                "sha256sum": t_sha,
                "cat": t_cat,
                "sign": t_sign,
                "publish_oci_layout": t_layout,
                "publish_docker_registry": t_registry,
                "sign_plus_publish_registry": t_sign + t_registry,
            },
            "throughput_MBps": {
                "sha256sum": mb / t_sha,
                "cat": mb / t_cat,
                "sign": mb / t_sign,
                "sign_plus_publish_oci_layout": mb / (t_sign + t_layout),
                "sign_plus_publish_registry": mb / (t_sign + t_registry),
            },
            "ratio_vs_sha256sum": {
                "sign": t_sign / t_sha,
                "sign_plus_publish_oci_layout": (t_sign + t_layout) / t_sha,
                "sign_plus_publish_registry": (t_sign + t_registry) / t_sha,
            },
            "republish_unchanged": {
                "first_bytes_uploaded": first.bytes_uploaded,
                "second_bytes_uploaded": second.bytes_uploaded,
                "second_blobs_uploaded": second.blobs_uploaded,
                "blobs_total": second.blobs_total,
            },
        }
        out = ROOT / "bench" / "results" / "publish.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        tp = result["throughput_MBps"]
        ratio = result["ratio_vs_sha256sum"]
        print(f"bundle: {len(files)} files, {mb:.0f} MB (median of {args.repeat})")
        print(f"  sha256sum (disk-read limit)   {tp['sha256sum']:8.0f} MB/s")
        print(f"  cat > /dev/null (page cache)  {tp['cat']:8.0f} MB/s")
        print(
            f"  sign                          {tp['sign']:8.0f} MB/s  ({ratio['sign']:.2f}x sha256sum time)"
        )
        print(
            f"  sign + publish (oci-layout)   {tp['sign_plus_publish_oci_layout']:8.0f} MB/s"
            f"  ({ratio['sign_plus_publish_oci_layout']:.2f}x)"
        )
        print(
            f"  sign + publish (registry)     {tp['sign_plus_publish_registry']:8.0f} MB/s"
            f"  ({ratio['sign_plus_publish_registry']:.2f}x)"
        )
        rp = result["republish_unchanged"]
        print(
            f"  re-publish unchanged bundle: {rp['second_bytes_uploaded']} bytes uploaded "
            f"({rp['second_blobs_uploaded']}/{rp['blobs_total']} blobs; "
            f"first time {rp['first_bytes_uploaded']} bytes)"
        )
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
