"""``gate env``: list, lock and pre-build the isolated environments gate manages."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from gate.console import out, print_json
from gate.envs import EnvSpec, build_info, ensure, env_dir, lock, platform_as
from gate.errors import EnvironmentBuildError, InputError

# Core stacks by name -> "module:factory"; toolkits come from the trainer registry.
_CORE = {
    "base": "gate.base_model:base_env_spec",
    "vllm": "gate.serving:vllm_env_spec",
    "reference": "gate.serving:reference_env_spec",
    "lm-eval": "gate.evaluate:lm_eval_env_spec",
}


def _catalog() -> dict[str, Callable[[], EnvSpec]]:
    specs: dict[str, Callable[[], EnvSpec]] = {}
    for name, target in _CORE.items():
        module, _, attr = target.partition(":")
        specs[name] = getattr(importlib.import_module(module), attr)
    from gate.training import Host, get_trainer, trainers

    for toolkit in trainers.names():

        def factory(t: str = toolkit) -> EnvSpec:
            return get_trainer(t).env_spec(Host.detect())

        specs[f"trainer-{toolkit}"] = factory
    return specs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("env", help="list or pre-build gate's isolated environments (vLLM, toolkits, lm-eval)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="show every environment and whether it is built")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    build = verbs.add_parser("build", help="build environments now (they are otherwise built on first use)")
    build.add_argument("names", nargs="*", help="environments to build (see `gate env list`)")
    build.add_argument("--all", action="store_true", help="build every environment")
    build.set_defaults(func=run_build)
    lk = verbs.add_parser(
        "lock",
        help="refresh the committed lock files the environments install from (uv, with hashes)",
    )
    lk.add_argument("names", nargs="*", help="environments to lock (see `gate env list`)")
    lk.add_argument("--all", action="store_true", help="lock every environment")
    lk.add_argument(
        "--platform",
        choices=("cpu", "cuda", "both"),
        default="both",
        help="which hosts' locks to write (default: both; CUDA locks serve GPU hosts that build)",
    )
    lk.add_argument(
        "--upgrade",
        action="store_true",
        help="resolve every unpinned dependency anew (default: keep the lock's versions)",
    )
    lk.add_argument("--json", action="store_true")
    lk.set_defaults(func=run_lock)


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name, factory in _catalog().items():
        spec = factory()
        try:
            info, path, lock_sha = build_info(spec) or {}, str(env_dir(spec)), spec.lock().sha256
        except EnvironmentBuildError as exc:
            info, path, lock_sha = {}, f"unusable lock: {exc}", None
        rows.append(
            {
                "name": name,
                "built": bool(info),
                "path": path,
                "python": spec.python,
                "lock_file": spec.lock_path.name,
                "size_bytes": info.get("size_bytes"),
                "build_seconds": info.get("build_seconds"),
                "lock_sha256": lock_sha,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        size_bytes = r["size_bytes"]
        size = f"{size_bytes / 2**30:.1f} GiB" if isinstance(size_bytes, int) else "-"
        state = "built" if r["built"] else "not built"
        out.print(f"{r['name']:<22} {state:<10} {size:>9}  {r['path']}")
    return 0


def _chosen(args: argparse.Namespace, catalog: dict[str, Callable[[], EnvSpec]]) -> list[str]:
    names: list[str] = list(catalog) if args.all else args.names
    if not names:
        raise InputError("name at least one environment or pass --all", hint="see `gate env list`")
    for name in names:
        if name not in catalog:
            raise InputError(f"unknown environment '{name}'", hint=f"known: {', '.join(catalog)}")
    return names


def run_lock(args: argparse.Namespace) -> int:
    names = _chosen(args, _catalog())
    platforms = {"cpu": [False], "cuda": [True], "both": [False, True]}[args.platform]
    rows = []
    for cuda in platforms:
        # Specs depend on the platform (CPU torch, removals): describe them as on that host.
        with platform_as(cuda):
            catalog = _catalog()
            for name in names:
                spec = catalog[name]()
                if not args.json:
                    out.print(f"locking {name} ({'cuda' if cuda else 'cpu'}, Python {spec.python}) ...")
                made = lock(spec, upgrade=args.upgrade)
                rows.append({"name": name, "lock_file": str(made.path), "lock_sha256": made.sha256})
                if not args.json:
                    out.print(f"  {made.path.name}: {len(made.pins)} pinned, sha256 {made.sha256[:16]}")
    if args.json:
        print_json(rows)
    return 0


def run_build(args: argparse.Namespace) -> int:
    catalog = _catalog()
    names = _chosen(args, catalog)
    for name in names:
        env = ensure(catalog[name]())
        out.print(f"{name}: {env.python}")
    return 0
