"""The rooms (issue 20 §1): modules that imported each other — one of them from inside a
function — no longer do, and no module shadows a builtin. Read from the source, nothing run."""

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


def imports(module: str) -> set[str]:
    """The fedlib modules `module` imports anywhere in its file (inside functions too)."""
    p = FEDLIB.parent.joinpath(*module.split("."))
    path = p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(x for x in (base, node.module) if x)
            subs = {f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")}
            out |= subs if subs and len(subs) == len(node.names) else subs | {target}
    return {m for m in out if m.startswith("fedlib")}


@pytest.mark.parametrize(("low", "high"), [
    ("fedlib.lifecycle", "fedlib.runner"),  # the steps both loops share: runner and async_loop
    ("fedlib.async_loop", "fedlib.runner"),
    ("fedlib.sync_loop", "fedlib.runner"),  # the runner builds once and hands over to one loop
    ("fedlib.async_loop", "fedlib.wallclock"),  # the runner picks the clock, not the virtual loop
    ("fedlib.sync_loop", "fedlib.provenance"),  # the loops take what the runner built
    ("fedlib.async_loop", "fedlib.provenance"),
    ("fedlib.wallclock", "fedlib.provenance"),
    ("fedlib.wire.torch_comm", "fedlib.wire.comm"),  # both use wire.staging
    ("fedlib.privacy.client_level", "fedlib.privacy"),  # both use privacy.mechanism
    ("fedlib.privacy.dpsgd", "fedlib.privacy"),
    ("fedlib.lab.figures", "fedlib.partition_report"),  # the heatmap moved up; the old name forwards
])
def test_the_lower_module_does_not_import_the_higher(low, high):
    assert high not in imports(low), f"{low} imports {high}"


def test_the_parsing_sees_imports_inside_functions():
    assert "fedlib.privacy.client_level" in imports("fedlib.privacy")  # make() imports it lazily
    assert {"fedlib.privacy.mechanism", "fedlib.privacy.accounting"} <= imports("fedlib.privacy.dpsgd")


def test_no_module_shadows_a_builtin():
    shadowing = sorted(_name(p) for p in FEDLIB.rglob("*.py")
                       if not p.stem.startswith("_") and hasattr(builtins, p.stem))
    assert shadowing == [], shadowing
