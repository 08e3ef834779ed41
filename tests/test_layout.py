"""The layout is the architecture: the packages stack in layers (config and seeds at the bottom,
the notebook side and the command line at the top), no package imports one above it, the module
graph has no circle, no module shadows a builtin, and the library never imports the tests. Read
from the source, nothing run. Imports under `if TYPE_CHECKING:` are annotations, not
dependencies, and are left out of the layers."""

import ast
import builtins
from pathlib import Path

import pytest

FEDLIB = Path(__file__).resolve().parent.parent / "fedlib"


def _name(path: Path) -> str:
    parts = path.relative_to(FEDLIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    p = FEDLIB.parent.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports(module: str, annotations: bool = True) -> set[str]:
    """The fedlib modules `module` imports anywhere in its file (inside functions too; without
    the `if TYPE_CHECKING:` blocks when `annotations` is false)."""
    p = FEDLIB.parent.joinpath(*module.split("."))
    path = p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    blocks = [b for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.unparse(b.test)]
    typing_only = set() if annotations else {id(n) for b in blocks for n in ast.walk(b)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(x for x in (base, node.module) if x)
            subs = {f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")}
            out |= subs if subs and len(subs) == len(node.names) else subs | {target}
    return {m for m in out if m.startswith(("fedlib", "tests"))}


MODULES = sorted(_name(p) for p in FEDLIB.rglob("*.py"))
# Low to high. A package may import its own layer's modules and any layer below, never above.
LAYERS = [
    {"config", "seeds"},
    {"hpc"},  # launcher, devices, vendor libraries, where files go (store), the site install
    {"wire", "strategies", "learn"},  # the wire; the server rules; models, data, frozen prefix
    {"sim", "privacy"},  # clients, partitions, participation, the virtual clock; DP wrappers
    {"record"},  # the run folder: recorder, checkpoints, metrics, export, provenance
    {"engine"},  # the round, the three loops and the steps they share
    {"runner"},
    {"doctor", "lab", "bench", "cli", "__main__"},
]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fedlib"


def _layer(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


@pytest.mark.parametrize(("low", "high"), [
    ("fedlib.engine.lifecycle", "fedlib.runner"),  # the steps both loops share: runner and async_loop
    ("fedlib.engine.virtual", "fedlib.runner"),
    ("fedlib.engine.sync", "fedlib.runner"),  # the runner builds once and hands over to one loop
    ("fedlib.engine.virtual", "fedlib.engine.wall"),  # the runner picks the clock, not the virtual loop
    ("fedlib.engine.sync", "fedlib.record.provenance"),  # the loops take what the runner built
    ("fedlib.engine.virtual", "fedlib.record.provenance"),
    ("fedlib.engine.wall", "fedlib.record.provenance"),
    ("fedlib.wire.torch_comm", "fedlib.wire.comm"),  # both use wire.staging
    ("fedlib.privacy.client_level", "fedlib.privacy"),  # both use privacy.mechanism
    ("fedlib.privacy.dpsgd", "fedlib.privacy"),
    ("fedlib.sim.partition_report", "fedlib.lab.figures"),  # the library never imports the notebook side
])
def test_the_lower_module_does_not_import_the_higher(low, high):
    assert high not in imports(low), f"{low} imports {high}"


def test_the_parsing_sees_imports_inside_functions():
    assert "fedlib.privacy.client_level" in imports("fedlib.privacy")  # make() imports it lazily
    assert {"fedlib.privacy.mechanism", "fedlib.privacy.accounting"} <= imports("fedlib.privacy.dpsgd")


def test_every_package_has_a_layer():
    assert {_package(m) for m in MODULES} - {"fedlib"} <= set().union(*LAYERS)


def test_no_package_imports_a_higher_layer():
    upward = sorted(f"{m} -> {t}" for m in MODULES for t in imports(m, annotations=False)
                    if t.startswith("fedlib.") and _package(m) != "fedlib"
                    and _layer(_package(t)) > _layer(_package(m)))
    assert upward == [], upward


def test_the_module_graph_has_no_circle():
    graph = {m: {t for t in imports(m, annotations=False) if t in MODULES and t != m} for m in MODULES}
    seen: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(m: str, path: list[str]) -> list[str] | None:
        seen[m] = 1
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                return [*path, m, t]
            if t not in seen and (found := visit(t, [*path, m])):
                return found
        seen[m] = 2
        return None

    circles = [c for m in MODULES if m not in seen and (c := visit(m, []))]
    assert circles == [], circles


def test_the_library_never_imports_the_tests():
    assert sorted(m for m in MODULES if any(t.startswith("tests") for t in imports(m))) == []


def test_no_module_shadows_a_builtin():
    shadowing = sorted(_name(p) for p in FEDLIB.rglob("*.py")
                       if not p.stem.startswith("_") and hasattr(builtins, p.stem))
    assert shadowing == [], shadowing
