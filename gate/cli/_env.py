"""``gate env``: list and pre-build the isolated environments gate manages."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from gate.console import out, print_json
from gate.envs import EnvSpec, build_info, ensure, env_dir
from gate.errors import InputError

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


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name, factory in _catalog().items():
        spec = factory()
        info = build_info(spec) or {}
        rows.append(
            {
                "name": name,
                "built": bool(info),
                "path": str(env_dir(spec)),
                "python": spec.python,
                "size_bytes": info.get("size_bytes"),
                "build_seconds": info.get("build_seconds"),
                "lock_sha256": info.get("lock_sha256"),
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


def run_build(args: argparse.Namespace) -> int:
    catalog = _catalog()
    names = list(catalog) if args.all else args.names
    if not names:
        raise InputError("name at least one environment or pass --all", hint="see `gate env list`")
    for name in names:
        if name not in catalog:
            raise InputError(f"unknown environment '{name}'", hint=f"known: {', '.join(catalog)}")
    for name in names:
        env = ensure(catalog[name]())
        out.print(f"{name}: {env.python}")
    return 0
