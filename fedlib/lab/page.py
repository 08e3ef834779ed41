"""`python -m fedlib record [--profile quick]`: the lab record as ONE HTML page a browser opens
without Jupyter (`outputs/<profile>/index.html`), and the README's claims block.

A reader of the study wants the claims first, then the evidence: so the page opens with the
claims table (`claims.csv`, as `claims.show` formats it), then every notebook in study order with
its prose (markdown cells), its parameters, and the figures and tables its cells displayed (PNG
embedded as data: URIs, HTML tables as the kernel rendered them), and ends with `provenance.json`.
Log streams and scrapbook records are left out: they are noise to a reader and are kept in the
executed notebooks beside it. The page is built from the executed notebooks alone, so it can be
rebuilt at any time without rerunning anything.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import nbformat
import pandas as pd

from ..hpc.store import REPO_ROOT
from ..record.metrics import write_text
from . import claims
from .books import NOTEBOOKS, available

PAGE = "index.html"
INJECTED = "injected-parameters"  # papermill's tag on the cell it adds after `parameters`
README = REPO_ROOT / "README.md"
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
README_COLUMNS = ("claim", "effect (95% CI)", "tolerance", "verdict", "budget")
CLAIMS_HEADING = "Claims"
STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}
img{max-width:100%}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}
section.nb{border-top:3px solid #444;margin-top:2.5rem}
.params{font-size:.8rem;color:#555}.error{color:#a00}"""


def claims_view(out: Path) -> pd.DataFrame | None:
    """`claims.csv` as the reader sees it (`claims.show`); None when the summary did not run.
    Columns an older table lacks are added empty, so an older record still renders."""
    path = out / "claims.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    for col in claims.COLUMNS:
        if col not in table:
            table[col] = pd.NA
    return claims.show(table)


def markdown_table(view: pd.DataFrame | None, columns: tuple[str, ...] = README_COLUMNS) -> str:
    """The claims as a GitHub Markdown table (no tabulate dependency): what README shows."""
    if view is None:
        return "_No claims table committed yet: `make record` writes it._"
    cols = [c for c in columns if c in view]

    def cell(v: object) -> str:
        return "" if pd.isna(v) else str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for _, r in view.iterrows()]
    return "\n".join(lines)


def readme_block(readme_text: str) -> str:
    """What stands between the claims markers of README (stripped)."""
    if START not in readme_text or END not in readme_text:
        raise ValueError(f"README.md: no {START} ... {END} block for the claims table")
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip()


def with_claims(readme_text: str, table_md: str) -> str:
    """README with its claims block replaced by `table_md` (the rest byte for byte the same)."""
    readme_block(readme_text)  # raises, naming the markers, when the block is missing
    head, rest = readme_text.split(START, 1)
    return f"{head}{START}\n{table_md}\n{END}{rest.split(END, 1)[1]}"


def _output_html(out: dict, result: bool) -> str:
    """One cell output: a figure, a table, or (for a cell's value) its text; '' for the rest."""
    if out["output_type"] == "error":
        return f'<pre class="error">{html.escape(out["ename"])}: {html.escape(out["evalue"])}</pre>'
    data = out.get("data", {})
    if "image/png" in data:
        png = "".join(data["image/png"]).replace("\n", "")
        return f'<img src="data:image/png;base64,{png}" alt="figure">'
    if "text/html" in data:
        return "".join(data["text/html"])
    if result and "text/plain" in data:  # a displayed widget's text/plain is a placeholder: skipped
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def notebook_html(path: Path) -> str:
    """One executed notebook as a page section: prose, parameters, displayed outputs, in cell order."""
    from nbconvert.filters import markdown2html

    nb = nbformat.read(path, as_version=4)
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    parts = [f'<section class="nb" id="{path.stem}"><p><code>{path.name}</code></p>']
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(markdown2html(cell.source))
        elif INJECTED in cell.metadata.get("tags", []):  # where the run's parameters took effect
            text = html.escape(json.dumps(params, sort_keys=True), quote=False)
            parts.append(f'<p class="params">parameters: {text}</p>')
        elif cell.cell_type == "code":
            parts += [_output_html(o, o["output_type"] == "execute_result") for o in cell.get("outputs", [])]
    return "\n".join(p for p in parts if p) + "\n</section>"


def _text(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def provenance_html(out: Path) -> str:
    path = out / "provenance.json"
    if not path.is_file():
        return "<p>no provenance.json</p>"
    prov = json.loads(path.read_text())
    status = prov.pop("status", [])
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v), quote=False)}</td></tr>"
                   for k, v in prov.items())
    return f"<table>{rows}</table>" + (pd.DataFrame(status).to_html(index=False) if status else "")


def names_in(out: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """The executed notebooks in `out`, in study order (the summary last), then any others."""
    have = {p.stem for p in out.glob("[0-9][0-9]_*.ipynb")}
    order = [n for n in available(notebooks) if n in have]
    return order + sorted(have - set(order))


def build(out: Path, notebooks: Path = NOTEBOOKS) -> Path:
    """Write `out/index.html` from what `out` holds; returns its path."""
    names = names_in(out, notebooks)
    view = claims_view(out)
    table = ("<p>no claims.csv: 99_summary did not run in this record</p>" if view is None
             else view.to_html(index=False, na_rep="", escape=True))
    toc = "".join(f'<li><a href="#{n}">{n}</a></li>' for n in names)
    body = [f"<h1>fedlib lab record — {html.escape(out.name)}</h1>",
            f'<h2 id="claims">{CLAIMS_HEADING}</h2>', table, f"<h2>Notebooks</h2><ol>{toc}</ol>",
            *(notebook_html(out / f"{n}.ipynb") for n in names),
            '<h2 id="provenance">Provenance</h2>', provenance_html(out)]
    head = (f'<meta charset="utf-8"><title>fedlib lab record: {html.escape(out.name)}</title>'
            f"<style>{STYLE}</style>")
    page = f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    write_text(out / PAGE, page)
    return out / PAGE


def update_readme(out: Path, readme: Path = README) -> bool:
    """Refill README's claims block from `out/claims.csv`; True when README changed."""
    text = readme.read_text()
    new = with_claims(text, markdown_table(claims_view(out)))
    if new != text:
        write_text(readme, new)
    return new != text
