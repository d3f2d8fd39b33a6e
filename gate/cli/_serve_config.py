"""``gate serve-config``: write the verify-on-load resolver's configuration (and install the vLLM plugin)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gate.cli._verify import add_trust_options
from gate.console import err, out, print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve-config",
        help="configure vLLM to serve only signed, gated adapters (the gate LoRA resolver plugin)",
        description=(
            "Write the configuration of gate's vLLM LoRA resolver plugin: which adapter names may be served "
            "from which OCI registry or layout, who must have signed them, under which contract, for which "
            "base; optionally install the plugin. Exit 0 written, 2 bad input."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="the configuration file to write (JSON)")
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", type=Path, metavar="DIR", help="the base model directory this server serves")
    base.add_argument("--base-identity", help="the served base's identity (instead of --base)")
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        required=True,
        metavar="NAME=REPO",
        help="an allowed adapter name and its repository (oci://HOST/REPO or oci-layout://PATH); repeatable",
    )
    p.add_argument("--deny", action="append", default=[], metavar="sha256:DIGEST", help="a revoked release")
    p.add_argument("--cache", type=Path, help="content-addressed cache of verified bundles")
    p.add_argument("--cache-max-gb", type=float, default=32.0, help="cache size bound in GiB (default 32)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one resolution may take")
    p.add_argument("--audit-url", help="the gate service's /api/resolutions URL (audit log)")
    p.add_argument("--audit-token-file", type=Path, help="file holding the service token for --audit-url")
    p.add_argument(
        "--install-plugin", action="store_true", help="install the plugin into gate's own vLLM environment"
    )
    p.add_argument(
        "--plugin-dir",
        type=Path,
        help="install the plugin into this site-packages (another vLLM installation, or a PYTHONPATH entry)",
    )
    add_trust_options(p)
    p.add_argument("--json", action="store_true", help="print the written configuration as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.cli._verify import trust_from_args
    from gate.errors import InputError
    from gate.resolver import CONFIG_ENV, ResolverConfig, Signer
    from gate.resolver._config import Audit
    from gate.resolver._install import env_site_packages, install_plugin

    policy, contract_sha = trust_from_args(args)
    adapters: dict[str, str] = {}
    for item in args.adapter:
        name, sep, repo = item.partition("=")
        if not sep or not name or not repo:
            raise InputError(
                f"--adapter {item!r} must be NAME=REPO (e.g. support-bot=oci://registry/team/bot)"
            )
        if repo.startswith("oci-layout://") and not repo.startswith("oci-layout:///"):
            repo = "oci-layout://" + str(Path(repo.removeprefix("oci-layout://")).resolve())
        adapters[name] = repo
    if args.base is not None:
        from gate.base_model import base_identity

        identity = base_identity(args.base)
    else:
        identity = args.base_identity
    from gate.envs import gate_home

    config = ResolverConfig(
        gate_python=Path(sys.executable).absolute(),
        base_identity=identity,
        contract_sha256=contract_sha.removeprefix("sha256:"),
        signer=Signer(
            method=policy.method,
            public_key=policy.public_key.resolve() if policy.public_key else None,
            ca_chain=tuple(c.resolve() for c in policy.ca_chain),
            cert_identity=policy.cert_identity,
            cert_fingerprint=policy.cert_fingerprint,
            sigstore_identity=policy.sigstore_identity,
            sigstore_issuer=policy.sigstore_issuer,
        ),
        adapters=adapters,
        denied=tuple(args.deny),
        cache_dir=(args.cache or gate_home() / "resolver-cache").absolute(),
        cache_max_bytes=int(args.cache_max_gb * (1 << 30)),
        timeout_s=args.timeout,
        audit=Audit(url=args.audit_url, token_file=args.audit_token_file) if args.audit_url else None,
    )
    config.write(args.out)
    installed: list[str] = []
    if args.install_plugin:
        from gate.envs import ensure
        from gate.serving import vllm_env_spec

        installed.append(str(install_plugin(env_site_packages(ensure(vllm_env_spec()).python))))
    if args.plugin_dir:
        installed.append(str(install_plugin(args.plugin_dir)))
    path = args.out.absolute()
    if args.json:
        print_json({"config": str(path), **config.model_dump(mode="json"), "plugin": installed})
        return 0
    out.print(f"wrote {path}", markup=False)
    for p in installed:
        out.print(f"installed the plugin: {p}", markup=False)
    err.print(
        "start vLLM with:\n"
        f"  VLLM_PLUGINS=gate VLLM_ALLOW_RUNTIME_LORA_UPDATING=True {CONFIG_ENV}={path} \\\n"
        "  python -m vllm.entrypoints.openai.api_server --model BASE_DIR --enable-lora ...\n"
        'then ask for a release by name: "model": "NAME:VERSION" (or NAME@sha256:...)',
        markup=False,
    )
    return 0
