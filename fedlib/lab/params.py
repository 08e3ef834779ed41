"""A notebook's parameters, checked by fedlib before the notebook uses them. papermill injects
whatever it is given — a name the notebook does not have, a string where it reads a list — and
the notebook would run with it, or die cells later with a traceback (`engines_mode: bogus`,
`buffer_sizes: [3]` → a bare AssertionError). Each notebook's first cell after its `parameters`
cell calls `check(name, globals())`, which refuses such a value in one line naming the
parameter and what it accepts: its type is the default's in the parameters cell (read from the
notebook itself, so the two cannot drift), plus the few rules below that a type cannot say.
"""

from __future__ import annotations

import ast
import json
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .books import NOTEBOOKS

CHOICES = {"engines_mode": ("mpi", "local", "connect")}  # fedlib.lab.engines.start's modes
# a number or None: no such arm (deadline_quantile), every example (train_samples, eval_samples)
OPTIONAL = frozenset({"deadline_quantile", "train_samples", "eval_samples"})
# (notebook, parameter, holds, what it accepts): rules across parameters
Rule = tuple[str, str, Callable[[Mapping[str, Any]], bool], Callable[[Mapping[str, Any]], str]]


def _divides_concurrency(key: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: all(isinstance(k, int) and k > 0 and p["concurrency"] % k == 0 for k in p[key])


def _buffer_sizes(p: Mapping[str, Any]) -> str:
    return f"FedBuff buffer sizes K that divide concurrency={p['concurrency']}"


def _accuracy_or_none(p: Mapping[str, Any]) -> bool:
    t = p["target"]
    return t is None or (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1)


RULES: list[Rule] = [("08_async", key, _divides_concurrency(key), _buffer_sizes)
                     for key in ("buffer_sizes", "wall_buffer_sizes")]
RULES.append(("08_async", "target", _accuracy_or_none,
              lambda p: "null (a pilot on pilot_seeds fixes it) or an accuracy strictly between 0 and 1"))
IPYTHON = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})  # a kernel's own names


class ParameterError(ValueError):
    """A notebook parameter papermill was given that the notebook cannot use."""


def declared(name: str, notebooks: Path = NOTEBOOKS) -> dict[str, Any]:
    """The notebook's parameters and their defaults, from its cell tagged `parameters`."""
    cells = json.loads((notebooks / f"{name}.ipynb").read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def _accepts(default: Any, key: str) -> tuple[Callable[[Any], bool], str]:
    """Whether a value fits the parameter whose default is `default`, and how to say what fits."""
    if key in CHOICES:
        return (lambda v: v in CHOICES[key]), "one of " + " | ".join(CHOICES[key])
    if default is None:
        return (lambda v: True), "anything"
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        what = "a whole number" + (" or None" if key in OPTIONAL else "")
        return (lambda v: (v is None and key in OPTIONAL)
                or (isinstance(v, int) and not isinstance(v, bool))), what
    if isinstance(default, float):
        what = "a number" + (" or None" if key in OPTIONAL else "")
        return (lambda v: (v is None and key in OPTIONAL) or (isinstance(v, (int, float))
                                                              and not isinstance(v, bool))), what
    if isinstance(default, list):
        if not default:
            return (lambda v: isinstance(v, list)), "a list"
        item, what = _accepts(default[0], "")
        items = what.removeprefix("a ").removeprefix("one of ")
        return (lambda v: isinstance(v, list) and all(item(x) for x in v)), f"a list of {items}s"
    kind: type = type(default)
    names: dict[type, str] = {str: "a string", dict: "a mapping"}
    return (lambda v: isinstance(v, kind)), names.get(kind, kind.__name__)


def check(name: str, namespace: Mapping[str, Any], notebooks: Path = NOTEBOOKS) -> None:
    """Refuse (ParameterError, one line) a parameter of notebook `name` that it does not have or
    cannot use; `namespace` is the notebook's globals() right after its parameters."""
    decl = declared(name, notebooks)
    given = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in IPYTHON
             and not isinstance(v, (types.ModuleType, types.FunctionType, type))}
    if unknown := sorted(set(given) - set(decl)):
        raise ParameterError(f"{name}: unknown parameter {unknown[0]!r}; it takes {', '.join(decl)}")
    values = {**decl, **given}
    for key, default in decl.items():
        fits, what = _accepts(default, key)
        if not fits(values[key]):
            raise ParameterError(f"{name}: parameter {key} is {values[key]!r}; it takes {what}")
    for book, key, holds, says in RULES:
        if book == name and not holds(values):
            raise ParameterError(f"{name}: parameter {key} is {values[key]!r}; it takes {says(values)}")
