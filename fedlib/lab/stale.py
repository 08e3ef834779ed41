"""Is a committed lab record still the record of this code? `problems(out)` lists every reason it
is not (empty: it is current); `python -m fedlib record --check` prints them.

The record is what a reader trusts without rerunning 20 to 40 minutes of notebooks, so it must be
the output of the code in the tree: every notebook of the study executed, from the same code
cells the source notebooks hold now (papermill's injected parameters cell aside) and with the
parameters `params/<profile>/` holds now, by ONE `reproduce` invocation (its provenance lists them
all, all ok) on a commit that is an ancestor of HEAD with no local edits (provenance's `git_dirty`:
edits under fedlib/). Any later edit to a notebook's code or parameters makes it stale.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import yaml

from ..hpc.store import REPO_ROOT
from .books import NOTEBOOKS, PARAMS, available
from .page import INJECTED

RUN_KEYS = ("profile", "out_dir")  # parameters reproduce sets per invocation, not from params/
# files a notebook reads beyond its parameters (repo-relative): an edit since the record's commit
# makes that notebook's output stale (01 projects with the networks of interconnects.yaml)
READS: dict[str, tuple[str, ...]] = {"01_comm_scaling": ("params/interconnects.yaml",)}


def code_cells(path: Path) -> list[str]:
    """The code a notebook runs, the cell papermill injected left out."""
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells
            if c.cell_type == "code" and INJECTED not in c.metadata.get("tags", [])]


def notebook_problems(executed: Path, source: Path, params_file: Path) -> list[str]:
    """Reasons `executed` is not an execution of `source` with `params_file`."""
    if not executed.is_file():
        return [f"{executed.name}: not in the record"]
    ran, now = code_cells(executed), code_cells(source)
    differ = [str(i) for i, (a, b) in enumerate(zip(ran, now, strict=False)) if a != b]
    out = [f"{executed.name}: code cell(s) {', '.join(differ)} differ from {source}"] if differ else []
    if len(ran) != len(now):
        out.append(f"{executed.name}: {len(ran)} code cells, {source.name} has {len(now)}")
    used = nbformat.read(executed, as_version=4).metadata.get("papermill", {}).get("parameters", {})
    if not params_file.is_file():
        return [*out, f"{executed.name}: no {params_file} to check its parameters against"]
    want = yaml.safe_load(params_file.read_text()) or {}
    if _fixed(used) != _fixed(want):
        out.append(f"{executed.name}: ran with other parameters than {params_file}")
    return out


def _fixed(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in RUN_KEYS}


def git_problems(prov: dict, repo: Path) -> list[str]:
    commit = prov.get("git_commit")
    if not commit:
        return ["provenance.json: no git_commit (not produced from a git checkout)"]
    dirty = prov.get("git_dirty") is not False  # a record that does not say is not known clean
    out = ["provenance.json: produced from a dirty tree (git_dirty: true)"] if dirty else []
    rc = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=repo,
                        capture_output=True, timeout=30).returncode
    if rc != 0:
        out.append(f"provenance.json: commit {commit[:12]} is not an ancestor of HEAD"
                   + (" (unknown here: a shallow clone?)" if rc != 1 else ""))
    return out


def read_problems(prov: dict, names: list[str], repo: Path,
                  reads: dict[str, tuple[str, ...]] = READS) -> list[str]:
    """A file a recorded notebook reads (`READS`) that differs now (committed or not) from the
    record's commit."""
    commit, out = prov.get("git_commit"), []
    for n in names:
        for f in reads.get(n, ()):
            rc = subprocess.run(["git", "diff", "--quiet", str(commit), "--", f], cwd=repo,
                                capture_output=True, timeout=30).returncode if commit else 1
            if rc != 0:
                out.append(f"{n}.ipynb: {f} changed since the record's commit {str(commit)[:12]}")
    return out


def problems(out: Path, notebooks: Path = NOTEBOOKS, params: Path = PARAMS,
             repo: Path = REPO_ROOT, reads: dict[str, tuple[str, ...]] = READS) -> list[str]:
    """Every reason the record in `out` is not the current one; [] when it is."""
    prov_path = out / "provenance.json"
    if not prov_path.is_file():
        return [f"{out}: no record (no provenance.json): run `make record` and commit it"]
    prov = json.loads(prov_path.read_text())
    names = available(notebooks)
    found = []
    if prov.get("profile") != out.name:
        found.append(f"provenance.json: profile {prov.get('profile')!r}, not {out.name!r}")
    missing = [n for n in names if n not in prov.get("notebooks", [])]
    if missing:
        found.append(f"provenance.json: this reproduce did not run {', '.join(missing)} (a partial record)")
    failed = [s["notebook"] for s in prov.get("status", []) if s.get("status") != "ok"]
    if failed or not prov.get("ended"):
        found.append(f"provenance.json: reproduce did not finish ok ({', '.join(failed) or 'no end time'})")
    for n in names:
        found += notebook_problems(out / f"{n}.ipynb", notebooks / f"{n}.ipynb",
                                   params / out.name / f"{n}.yaml")
    for extra in sorted({p.stem for p in out.glob("[0-9][0-9]_*.ipynb")} - set(names)):
        found.append(f"{extra}.ipynb: in the record but no such notebook in {notebooks}")
    for f in ("claims.csv", "index.html"):
        if not (out / f).is_file():
            found.append(f"{out / f}: missing")
    page = out / "index.html"
    if page.is_file() and str(prov.get("git_commit")) not in page.read_text():
        found.append(f"{page}: not built from this provenance.json (run `python -m fedlib record`)")
    return found + read_problems(prov, names, repo, reads) + git_problems(prov, repo)
