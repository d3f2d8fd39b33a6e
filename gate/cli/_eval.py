"""``gate eval``: score an adapter against its base model with lm-evaluation-harness."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gate.console import err, out, print_json

if TYPE_CHECKING:
    from gate.contract import Contract
    from gate.evaluate import Baseline
    from gate.serving import VLLMServer


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate an adapter against the base model (lm-eval through vLLM, paired thresholds)",
        description=(
            "Score the adapter and the base model with lm-evaluation-harness on the same vLLM server over "
            "the same documents, and judge each contract metric on the paired per-document differences. "
            "Exit 0 passed, 1 a threshold failed or the server died, 2 bad input."
        ),
    )
    p.add_argument(
        "adapter", type=Path, metavar="ADAPTER_DIR", help="LoRA adapter directory (or a run directory)"
    )
    p.add_argument(
        "--contract",
        type=Path,
        default=os.environ.get("GATE_CONTRACT"),
        help="contract YAML, or 'smollm2' for the embedded demo contract (required; env GATE_CONTRACT)",
    )
    p.add_argument(
        "--server",
        default=os.environ.get("GATE_SERVER_URL"),
        metavar="URL",
        help="a running vLLM server to use (default: start one for this run; env GATE_SERVER_URL)",
    )
    p.add_argument(
        "--base",
        type=Path,
        metavar="DIR",
        help="base model directory, or 'smollm2' (default: the base the contract or the run names)",
    )
    add_baseline_options(p)
    p.add_argument(
        "--out", type=Path, default=Path("gate-eval"), help="output directory (default: ./gate-eval)"
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds the whole evaluation may take (default 3600)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=run)


def add_baseline_options(p: argparse.ArgumentParser) -> None:
    """``--baseline REF`` and the signer it must have (shared by ``gate eval`` and ``gate release``)."""
    g = p.add_argument_group("baseline: judge regressions against the last release instead of the base")
    g.add_argument(
        "--baseline",
        metavar="REF",
        help="a released bundle (oci://HOST/REPO:TAG, oci-layout://PATH:TAG or a bundle directory), "
        "verified before any score of it is used",
    )
    g.add_argument("--baseline-key", type=Path, metavar="PUB", help="public key PEM that signed the baseline")
    g.add_argument(
        "--baseline-cert-chain",
        type=Path,
        action="append",
        default=[],
        help="CA certificate PEM (repeatable)",
    )
    g.add_argument("--baseline-cert-identity", help="expected signing certificate identity of the baseline")
    g.add_argument("--baseline-sigstore-identity", help="expected keyless signer identity of the baseline")
    g.add_argument("--baseline-sigstore-issuer", help="expected OIDC issuer of the baseline's signer")


def baseline_from_args(args: argparse.Namespace, contract: Contract) -> Baseline | None:
    """The verified baseline the options name (None without ``--baseline``)."""
    if not args.baseline:
        return None
    from gate.cli._verify import trust_from_args
    from gate.errors import InputError
    from gate.evaluate import verified_baseline

    pins = argparse.Namespace(
        key=args.baseline_key,
        cert_chain=args.baseline_cert_chain,
        cert_identity=args.baseline_cert_identity,
        cert_fingerprint=None,
        sigstore_identity=args.baseline_sigstore_identity,
        sigstore_issuer=args.baseline_sigstore_issuer,
        sigstore_staging=False,
        contract=contract.source_path,
        contract_digest=None,
    )
    try:
        policy, _ = trust_from_args(pins)
    except InputError as e:
        raise InputError(
            f"--baseline {args.baseline}: {e.message}",
            hint="pin its signer: --baseline-key PUB.pem, --baseline-cert-chain CA.pem "
            "--baseline-cert-identity ID, or --baseline-sigstore-identity/-issuer",
        ) from e
    return verified_baseline(args.baseline, policy, contract=contract)


def _adapter_dir(path: Path) -> Path:
    # A run directory (RUN_DIR/adapter + run.json) is accepted as well as the adapter itself.
    if not (path / "adapter_config.json").exists() and (path / "adapter" / "adapter_config.json").is_file():
        return path / "adapter"
    return path


@contextlib.contextmanager
def _server(args: argparse.Namespace, base_dir: Path, contract: Contract) -> Iterator[VLLMServer]:
    from gate.serving import VLLMServer

    if args.server:
        yield VLLMServer.attach(args.server, contract, base_dir=base_dir)
        return
    err.print("gate eval: starting a vLLM server on the base model (about a minute on CPU)")
    with VLLMServer.start(base_dir, contract, log_dir=args.out / "server") as server:
        yield server


def run(args: argparse.Namespace) -> int:
    from gate.base_model import base_identity
    from gate.contract import Contract
    from gate.contracts import resolve_base, resolve_contract, run_of
    from gate.errors import InputError
    from gate.evaluate import check_inputs, run_eval

    contract = Contract.from_yaml(resolve_contract(args.contract))
    base_dir = resolve_base(contract, args.base, run=run_of(args.adapter))
    identity = base_identity(base_dir)
    if identity != contract.base_model.identity:
        raise InputError(
            f"the base model {base_dir} is not the one {contract.source_path} names "
            f"({identity} != {contract.base_model.identity})",
            hint="pass --base with the contract's base model",
        )
    adapter = _adapter_dir(args.adapter)
    check_inputs(adapter, contract)  # before a server is started or attached
    baseline = baseline_from_args(args, contract)
    with _server(args, base_dir, contract) as server:
        report = run_eval(
            adapter,
            contract,
            base_dir=base_dir,
            server=server,
            out_dir=args.out,
            baseline=baseline,
            timeout=args.timeout,
        )
    if args.json:
        print_json(report.to_dict())
    else:
        out.print(report.to_markdown(), markup=False)
        err.print(f"report: {args.out / 'report.json'} and {args.out / 'report.md'}")
    return 0 if report.passed else 1
