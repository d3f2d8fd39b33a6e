"""Dependencies point one way: readers, rules, gates, pipeline, service (the house rule, enforced).

Every import in gate/ (top level, inside functions, under TYPE_CHECKING, and the
``"gate.x:attr"`` targets registries import lazily) is read with ``ast``; a module
may import its own layer and the layers below it, never one above. Each top-level
module or package of gate/ is placed in exactly one layer below, so a new module
has to be placed before this test passes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gate

GATE = Path(gate.__file__).resolve().parent

#: Lowest first. Each layer names gate's top-level modules and packages (``gate.X``).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # Stdlib-level helpers everything may use: errors, output, subprocesses, digests, environments.
    (
        "base",
        frozenset(
            {
                "errors",
                "terminal",
                "console",
                "proc",
                "digests",
                "resources",
                "registry",
                "validation",
                "templates",
                "envlock",
                "envs",
            }
        ),
    ),
    # The inputs and artifacts: weights, contracts, specs, run records, bundles, signatures, OCI, verify.
    (
        "readers",
        frozenset(
            {
                "safetensors_io",
                "identity",
                "contract",
                "contract_files",
                "contracts",
                "vllm_support",
                "spec",
                "base_model",
                "training",
                "bundle",
                "evidence",
                "signing",
                "oci",
                "verify",
            }
        ),
    ),
    ("rules", frozenset({"rules", "check"})),
    # The serving runtime the gates run on; it imports no gate (issue 14: it used to import smoke).
    ("serving", frozenset({"serving"})),
    ("gates", frozenset({"smoke", "evaluate"})),
    # The one gate runner (gates as objects, attach-or-start): the gates themselves never import it.
    ("runner", frozenset({"gates"})),
    ("pipeline", frozenset({"pipeline", "approve", "preflight", "pilot", "reproduce"})),
    # What people and machines call: the service, the CLI, the demo, GitHub output, verify-on-load.
    ("service", frozenset({"service", "cli", "demo", "github", "resolver", "__main__"})),
)
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}
LAYER_NAME = {name: layer for layer, names in LAYERS for name in names}
#: Scripts run inside the isolated environments (vLLM, lm-eval, transformers), where gate is not installed.
SCRIPTS = "_envscripts"
#: A registry's lazy placeholder (gate/registry.py): the module is imported when the name is first used.
LAZY = re.compile(r"gate(?:\.[A-Za-z_]\w*)+:[A-Za-z_]\w*")


def top_level_units() -> set[str]:
    """Every ``gate.X`` that is a module or a package (gate/__init__.py itself is the root, not a unit)."""
    units = {p.stem for p in GATE.glob("*.py") if p.name != "__init__.py"}
    units |= {p.name for p in GATE.iterdir() if (p / "__init__.py").is_file()}
    return units


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in ``source``, at any depth; relative ones resolved
    against ``package``; ``from gate import x`` gives ``gate.x``; a lazy registry target
    ``"gate.x.y:attr"`` gives ``gate.x.y``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base == "gate":
                found += [(node.lineno, f"gate.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY.fullmatch(node.value):
            found.append((node.lineno, node.value.partition(":")[0]))
    return sorted(found)


def gate_imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, X) for every import of a top-level gate module ``gate.X`` (``from gate import __version__``,
    the root package, is not one)."""
    units = top_level_units()
    found = []
    for line, module in imported_modules(source, package):
        parts = module.split(".")
        if parts[0] == "gate" and len(parts) > 1 and parts[1] in units:
            found.append((line, parts[1]))
    return found


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(GATE.parent).with_suffix("").parts[:-1])


def source_files() -> list[Path]:
    return sorted(p for p in GATE.rglob("*.py") if SCRIPTS not in p.relative_to(GATE).parts)


def unit_of(path: Path) -> str:
    rel = path.relative_to(GATE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def upward_imports(path: Path, source: str) -> list[str]:
    """Each import in ``source`` (the text of gate module ``path``) of a layer above the module's own."""
    unit = unit_of(path)
    return [
        f"{path.relative_to(GATE.parent)}:{line}: {LAYER_NAME[unit]} module gate.{unit} "
        f"imports gate.{target} ({LAYER_NAME[target]})"
        for line, target in gate_imports(source, package_of(path))
        if LEVEL[target] > LEVEL[unit]
    ]


def test_every_gate_module_is_placed_in_exactly_one_layer() -> None:
    placed = [name for _, names in LAYERS for name in names]
    assert len(placed) == len(set(placed)), "a module is listed in two layers"
    units = top_level_units() - {SCRIPTS}
    assert units - set(placed) == set(), "place these new modules in a layer of LAYERS"
    assert set(placed) - units == set(), "these listed modules no longer exist"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        line
        for path in source_files()
        if path != GATE / "__init__.py"
        for line in upward_imports(path, path.read_text())
    ]
    assert upward == []


def test_environment_scripts_import_nothing_from_gate() -> None:
    scripts = sorted((GATE / SCRIPTS).glob("*.py"))
    assert scripts, "no scripts found: the layout changed"
    importing = [
        f"{p.name}:{line}: {module}"
        for p in scripts
        for line, module in imported_modules(p.read_text(), package_of(p))
        if module == "gate" or module.startswith("gate.")
    ]
    assert importing == []


def test_the_check_finds_upward_imports_inside_functions_relative_type_only_and_lazy() -> None:
    # The upward imports this test was written for were function-local (evidence -> serving).
    source = (
        "from typing import TYPE_CHECKING\n"
        "from gate.bundle import Verdict\n"
        "if TYPE_CHECKING:\n"
        "    from gate.pipeline import ReleaseRequest\n"
        "def version(url):\n"
        "    from gate.serving import VLLMClient\n"
        "    from .. import evaluate\n"
        "    import gate.service.app\n"
        "REGISTRY.register_lazy('x', 'gate.gates._builtin:SmokeGate')\n"
    )
    found = upward_imports(GATE / "contracts" / "_probe.py", source)
    assert [f.split(": ", 1)[1] for f in found] == [
        "readers module gate.contracts imports gate.pipeline (pipeline)",
        "readers module gate.contracts imports gate.serving (serving)",
        "readers module gate.contracts imports gate.evaluate (gates)",
        "readers module gate.contracts imports gate.service (service)",
        "readers module gate.contracts imports gate.gates (runner)",
    ]
