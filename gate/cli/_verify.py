"""``gate verify bundle REF``: check a released bundle before serving it (exit 0 only when it is sound)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from gate.console import out, print_json


def add_trust_options(p: argparse.ArgumentParser) -> None:
    """The options that pin who must have signed (shared by ``verify bundle`` and ``pull``)."""
    g = p.add_argument_group("signer (pin one)")
    g.add_argument(
        "--key", type=Path, default=_env_path("GATE_VERIFY_KEY"), help="public key PEM (env: GATE_VERIFY_KEY)"
    )
    g.add_argument(
        "--cert-chain", type=Path, action="append", default=[], help="CA certificate PEM (repeatable)"
    )
    g.add_argument("--cert-identity", help="expected signing certificate SAN (email, URI, DNS) or subject")
    g.add_argument("--cert-fingerprint", help="expected sha256 fingerprint of the signing certificate")
    g.add_argument("--sigstore-identity", help="expected keyless signer identity (e.g. the workflow URI)")
    g.add_argument(
        "--sigstore-issuer", help="expected OIDC issuer (e.g. https://token.actions.githubusercontent.com)"
    )
    g.add_argument("--sigstore-staging", action="store_true", help="use Sigstore's staging instance")
    c = p.add_argument_group("contract")
    c.add_argument(
        "--contract",
        type=Path,
        help="the contract the bundle must have passed under, or 'smollm2' for the embedded demo contract "
        "(this or --contract-digest is required)",
    )
    c.add_argument("--contract-digest", help="sha256 of the expected contract file instead of --contract")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def trust_from_args(args: argparse.Namespace) -> tuple[Any, str]:
    """Build the trust policy and the expected contract sha256 from the options."""
    from gate.contract import Contract
    from gate.contracts import resolve_contract
    from gate.errors import InputError
    from gate.signing import TrustPolicy, key_fingerprint

    contract = None
    if args.contract_digest:
        expected = args.contract_digest.removeprefix("sha256:")
        if len(expected) != 64:
            raise InputError(f"--contract-digest {args.contract_digest!r} is not a sha256")
    else:
        path = resolve_contract(args.contract, alternative=" or --contract-digest SHA256")
        contract = Contract.from_yaml(path)
        expected = contract.sha256
    policy_src = contract.signing if contract is not None else None
    cert_identity = args.cert_identity or (policy_src.certificate_identity if policy_src else None)
    sig_identity = args.sigstore_identity or (policy_src.sigstore_identity if policy_src else None)
    sig_issuer = args.sigstore_issuer or (policy_src.sigstore_issuer if policy_src else None)
    if args.key:
        policy = TrustPolicy(method="key", public_key=args.key)
        if policy_src and policy_src.key_fingerprint:
            got = key_fingerprint(args.key).removeprefix("sha256:")
            if got != policy_src.key_fingerprint.removeprefix("sha256:"):
                raise InputError(
                    f"--key {args.key} is not the key the contract pins ({policy_src.key_fingerprint})"
                )
    elif args.cert_chain or args.cert_fingerprint or args.cert_identity:
        policy = TrustPolicy(
            method="certificate",
            ca_chain=tuple(args.cert_chain),
            cert_identity=cert_identity,
            cert_fingerprint=args.cert_fingerprint,
        )
    elif sig_identity or sig_issuer:
        policy = TrustPolicy(
            method="sigstore",
            sigstore_identity=sig_identity,
            sigstore_issuer=sig_issuer,
            use_staging=args.sigstore_staging,
        )
    else:
        raise InputError(
            "no signer pinned: a bundle is only trusted when it is known who signed it",
            hint="pass --key PUB.pem, --cert-chain CA.pem --cert-identity ID, or --sigstore-identity/-issuer",
        )
    return policy, expected


def show_result(result: Any) -> None:
    """Human-readable summary of a verified bundle on stdout."""
    out.print("[bold green]verified[/] ", end="")
    # Everything below comes from the bundle: print it verbatim, never as rich markup.
    lines = [str(result.ref), f"  signed by  {result.signer}"]
    v = result.verdict
    lines.append(
        f"  contract   {v.contract.name} v{v.contract.version} (sha256 {result.contract_sha256[:16]}...)"
    )
    lines += [f"  gate {g.name:<6} {g.status:<7} {g.summary}" for g in v.gates]
    lines.append(f"  files      {len(result.files)}")
    if result.eval_markdown:
        lines += ["", result.eval_markdown.strip()]
    if result.out:
        lines += ["", f"ready for vLLM: --lora-modules NAME={result.out}"]
    out.print("\n".join(lines), markup=False, highlight=False)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="verify a released bundle (signature, digests, verdict)")
    vsub = p.add_subparsers(dest="verify_what", metavar="WHAT", required=True)
    b = vsub.add_parser(
        "bundle", help="verify a bundle: oci://HOST/REPO:TAG, oci-layout://PATH:TAG or a directory"
    )
    b.add_argument(
        "ref", help="oci://HOST[:PORT]/REPO:TAG|@sha256:..., oci-layout://PATH:TAG, or a bundle directory"
    )
    add_trust_options(b)
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate import github
    from gate.errors import Error
    from gate.verify import verify_bundle

    try:
        policy, expected = trust_from_args(args)
        result = verify_bundle(args.ref, policy, expected_contract_sha256=expected)
    except Error as e:
        # In GitHub Actions: the reason as an ::error annotation and in the job summary (else a no-op).
        github.report_error("gate verify bundle", e.message, hint=e.hint)
        raise
    if args.json:
        print_json(result.to_dict())
    else:
        show_result(result)
    return 0
