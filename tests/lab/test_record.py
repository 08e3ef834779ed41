"""The committed lab record (outputs/quick/): it exists, is tracked exactly as .gitignore says, is
current (stale.problems), and README's claims block is its claims.csv; the staleness checks and
the one-page HTML themselves on a synthetic record in a throwaway git repository."""

import json
import os
import subprocess

import nbformat
import pytest

from fedlib.cli import main
from fedlib.lab import page, reproduce, stale
from fedlib.learn.data import REPO_ROOT

QUICK = REPO_ROOT / "outputs" / "quick"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the committed record -------------------------------------------------------------------
def test_quick_record_is_committed():
    """A fresh clone has the lab record: every notebook executed, claims, provenance, the page."""
    want = [f"outputs/quick/{n}.ipynb" for n in reproduce.available()] + [
        f"outputs/quick/{f}" for f in ("claims.csv", "provenance.json", "index.html")]
    tracked = set(git(REPO_ROOT, "ls-files", "outputs/quick").splitlines())
    missing = [f for f in want if f not in tracked]
    assert not missing, f"no committed lab record ({len(missing)} files missing): `make record`, commit it"


def test_committed_quick_record_is_current():
    found = stale.problems(QUICK)
    if git(REPO_ROOT, "rev-parse", "--is-shallow-repository") == "true":  # a depth-limited CI clone:
        found = [f for f in found if "unknown here: a shallow clone?" not in f]  # ancestry unknowable
    assert found == []


def test_readme_claims_block_is_the_committed_claims_table():
    assert (QUICK / "claims.csv").is_file(), "no outputs/quick/claims.csv: run `make record`"
    readme = page.readme_block((REPO_ROOT / "README.md").read_text())
    assert readme == page.markdown_table(page.claims_view(QUICK)), "run `python -m fedlib record`"


def test_committed_record_stays_small():
    tracked = git(REPO_ROOT, "ls-files", "outputs/quick").splitlines()
    assert sum((REPO_ROOT / f).stat().st_size for f in tracked if (REPO_ROOT / f).is_file()) < 20e6


@pytest.mark.parametrize(("path", "kept"), [
    ("outputs/quick/claims.csv", True), ("outputs/quick/03_heterogeneity_ci.csv", True),
    ("outputs/quick/00_quickstart.ipynb", True), ("outputs/quick/provenance.json", True),
    ("outputs/quick/index.html", True), ("outputs/quick/index.png", True), ("outputs/README.md", True),
    ("outputs/quick/runs/acc-20261129T052127Z/acc-00/rounds.csv", False),
    ("outputs/quick/history/2026-11-29T0500+0000/claims.csv", False),
    ("outputs/quick/models/bert/model.safetensors", False), ("outputs/quick/bench/system.csv", False),
    ("outputs/quick/00_quickstart.png", False), ("outputs/quick/00_quickstart.html", False),
    ("outputs/quick/01_comm_scaling.progress.json", False), ("outputs/full/claims.csv", False),
    ("outputs/quickstart/rounds.csv", False)])
def test_gitignore_tracks_exactly_the_record(path, kept):
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT).returncode == 0
    assert ignored != kept, path


# --- the checks themselves, on a synthetic record ---------------------------------------------

def _notebook(code: str):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 01 · A study\n\nwhy it matters"),
        nbformat.v4.new_code_cell('profile = "quick"\nout_dir = "outputs/quick"\nseeds = [0]'),
        nbformat.v4.new_code_cell(code)])
    nb.cells[1].metadata["tags"] = ["parameters"]
    return nb


@pytest.fixture
def lab(tmp_path):
    """A git repo with one notebook and its quick params, committed; a current record of it."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params" / "quick").mkdir(parents=True)
    nbformat.write(_notebook("x = sum(seeds)\nx"), tmp_path / "notebooks" / "01_a.ipynb")
    (tmp_path / "params" / "quick" / "01_a.yaml").write_text("profile: quick\nout_dir: o\nseeds: [0, 1]\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "code")
    out = tmp_path / "outputs" / "quick"
    out.mkdir(parents=True)
    ran = _notebook("x = sum(seeds)\nx")  # as papermill leaves it: injected cell, outputs, metadata
    injected = nbformat.v4.new_code_cell(f'profile = "quick"\nout_dir = "{out}"\nseeds = [0, 1]\n')
    injected.metadata["tags"] = ["injected-parameters"]
    ran.cells.insert(2, injected)
    ran.cells[3].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="LOG-NOISE 50%|#####|"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgoFIGURE"}),
        nbformat.v4.new_output("display_data", data={"application/scrapbook.scrap.json+json": "SCRAP"}),
        nbformat.v4.new_output("execute_result", execution_count=3,
                               data={"text/html": "<table><td>TABLE-1</td></table>", "text/plain": "x"})]
    ran.metadata["papermill"] = {"parameters": {"profile": "quick", "out_dir": str(out), "seeds": [0, 1]}}
    nbformat.write(ran, out / "01_a.ipynb")
    (out / "claims.csv").write_text("claim,effect,ci_low,ci_high,n,measure,verdict\n"
                                    "accuracy holds | under skew,-0.01,-0.02,0.0,3,paired over seeds,holds\n")
    prov = {"git_commit": git(tmp_path, "rev-parse", "HEAD"), "git_dirty": False, "profile": "quick",
            "notebooks": ["01_a"], "started": "t0", "ended": "2026-11-29T06:00", "status": [
                {"notebook": "01_a", "status": "ok"}]}
    (out / "provenance.json").write_text(json.dumps(prov))
    page.build(out, tmp_path / "notebooks")
    return tmp_path


def _problems(lab):
    return stale.problems(lab / "outputs" / "quick", lab / "notebooks", lab / "params", lab)


def _provenance(lab, **change):
    path = lab / "outputs" / "quick" / "provenance.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    page.build(path.parent, lab / "notebooks")


def test_a_current_record_has_no_problems(lab):
    assert _problems(lab) == []


def test_a_changed_code_cell_is_stale(lab):
    nbformat.write(_notebook("x = max(seeds)\nx"), lab / "notebooks" / "01_a.ipynb")
    (found,) = _problems(lab)
    assert found.startswith("01_a.ipynb: code cell(s) 1 differ")


def test_an_added_code_cell_is_stale(lab):
    nb = _notebook("x = sum(seeds)\nx")
    nb.cells.append(nbformat.v4.new_code_cell("y = 1"))
    nbformat.write(nb, lab / "notebooks" / "01_a.ipynb")
    assert _problems(lab) == ["01_a.ipynb: 2 code cells, 01_a.ipynb has 3"]


def test_changed_parameters_are_stale(lab):
    path = lab / "params" / "quick" / "01_a.yaml"
    path.write_text("profile: quick\nout_dir: elsewhere\nseeds: [0, 1, 2]\n")
    assert _problems(lab) == [f"01_a.ipynb: ran with other parameters than {path}"]


def test_a_commit_not_an_ancestor_of_head_is_stale(lab):
    other = git(lab, "commit-tree", "HEAD^{tree}", "-m", "a commit HEAD does not descend from")
    _provenance(lab, git_commit=other)
    assert _problems(lab) == [f"provenance.json: commit {other[:12]} is not an ancestor of HEAD"]


def test_a_later_commit_keeps_the_record_current(lab):
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "the record")
    assert _problems(lab) == []


def test_an_input_the_notebook_reads_changed_since_the_record_is_stale(lab):
    """01 projects with params/interconnects.yaml: an edit to it, committed or not, is stale."""
    net = lab / "params" / "nets.yaml"
    net.write_text("slingshot: {alpha_s: 2.0e-6}\n")
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "nets")
    _provenance(lab, git_commit=git(lab, "rev-parse", "HEAD"))
    reads = {"01_a": ("params/nets.yaml",)}
    found = stale.problems(lab / "outputs" / "quick", lab / "notebooks", lab / "params", lab, reads)
    assert found == []
    net.write_text("slingshot: {alpha_s: 1.0e-6}\n")
    found = stale.problems(lab / "outputs" / "quick", lab / "notebooks", lab / "params", lab, reads)
    assert found == [f"01_a.ipynb: params/nets.yaml changed since the record's commit "
                     f"{git(lab, 'rev-parse', 'HEAD')[:12]}"]


def test_a_dirty_tree_is_stale(lab):
    _provenance(lab, git_dirty=True)
    assert _problems(lab) == ["provenance.json: produced from a dirty tree (git_dirty: true)"]


def test_a_partial_or_failed_reproduce_is_stale(lab):
    nbformat.write(_notebook("y = 2"), lab / "notebooks" / "02_b.ipynb")
    (lab / "params" / "quick" / "02_b.yaml").write_text("profile: quick\nout_dir: x\nseeds: [0]\n")
    _provenance(lab, status=[{"notebook": "01_a", "status": "failed"}])
    assert _problems(lab) == ["provenance.json: this reproduce did not run 02_b (a partial record)",
                              "provenance.json: reproduce did not finish ok (01_a)",
                              "02_b.ipynb: not in the record"]


def test_a_page_from_another_record_is_stale(lab):
    page = lab / "outputs" / "quick" / "index.html"
    page.write_text(page.read_text().replace(git(lab, "rev-parse", "HEAD"), "0123abc"))
    assert _problems(lab) == [f"{page}: not built from this provenance.json (run `python -m fedlib record`)"]


def test_no_record_is_a_problem(tmp_path):
    (found,) = stale.problems(tmp_path / "quick", tmp_path, tmp_path, tmp_path)
    assert "no record" in found


# --- the page and the README block ----------------------------------------------------------

def test_page_answer_first_then_notebooks_in_order_provenance_last(lab):
    """Header and forest plot, the claims, the contents, then each notebook's prose, parameters,
    figures and tables in cell order, provenance last (the page in detail: test_page.py)."""
    page = (lab / "outputs" / "quick" / "index.html").read_text()
    marks = ['<header id="top">', "1 claims checked", '<figure id="forest"', '<h2 id="claims">Claims</h2>',
             "accuracy holds | under skew", "-0.01 [-0.02, +0]", '<h2 id="contents">',
             '<section class="nb" id="01_a">', "why it matters", '"seeds": [0, 1]',
             '<img src="data:image/png;base64,iVBORw0KGgoFIGURE"', "TABLE-1", '<h2 id="provenance">',
             "<td>2026-11-29T06:00</td>"]
    at = [page.find(m) for m in marks]
    assert -1 not in at and at == sorted(at), dict(zip(marks, at, strict=True))
    for noise in ("LOG-NOISE", "SCRAP", "<pre>x</pre>"):
        assert noise not in page


def test_readme_block_is_replaced_in_place():
    text = f"intro\n{page.START}\nold table\n{page.END}\nrest | kept\n"
    new = page.with_claims(text, "| claim |\n|---|\n| a |")
    assert new == f"intro\n{page.START}\n| claim |\n|---|\n| a |\n{page.END}\nrest | kept\n"
    assert page.readme_block(new) == "| claim |\n|---|\n| a |"
    with pytest.raises(ValueError, match="README.md: no <!-- claims:start -->"):
        page.readme_block("no markers")


def test_markdown_table_escapes_pipes(lab):
    table = page.markdown_table(page.claims_view(lab / "outputs" / "quick"))
    assert table.splitlines() == ["| claim | effect (95% CI) | tolerance | verdict | budget |",
                                  "|---|---|---|---|---|",
                                  "| accuracy holds \\| under skew | -0.01 [-0.02, +0] |  | holds |  |"]


def test_reproduce_ends_with_the_page(tmp_path):
    """`fedlib reproduce` writes index.html for every profile (the notebook smoke tests read it)."""
    books, params = tmp_path / "nb", tmp_path / "params" / "p"
    books.mkdir()
    params.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
                                         nbformat.v4.new_code_cell("from IPython.display import HTML\n"
                                                                   "HTML('<b>SHOWN-' + profile + '</b>')")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, books / "01_ok.ipynb")
    (params / "01_ok.yaml").write_text("profile: p\nout_dir: x\n")
    reproduce.run("p", notebooks=books, out_root=tmp_path / "out", params=tmp_path / "params")
    page = (tmp_path / "out" / "p" / "index.html").read_text()
    assert "no claims.csv" in page and page.index('id="01_ok"') < page.index("<b>SHOWN-p</b>")


def test_cli_record_without_a_record_is_one_line_error(tmp_path, capsys):
    assert main(["record", "--profile", "nope", "--out-root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"fedlib: error: {tmp_path / 'nope'}: no record to render")
