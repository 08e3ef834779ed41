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
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat
import pandas as pd

from ..hpc.store import REPO_ROOT
from ..record.metrics import write_text
from . import answer, claims
from .books import NOTEBOOKS, available

PAGE = "index.html"
INJECTED = "injected-parameters"  # papermill's tag on the cell it adds after `parameters`
README = REPO_ROOT / "README.md"
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
README_COLUMNS = ("claim", "effect (95% CI)", "tolerance", "verdict", "budget")
CLAIMS_HEADING = "Claims"
STYLE = """body{font-family:system-ui,sans-serif;max-width:76rem;margin:1.5rem auto;padding:0 1rem;
line-height:1.45;color:#222;overflow-wrap:anywhere}
h1{margin:0;font-size:1.6rem}.lede{font-size:1.05rem;margin:.3rem 0}.small{font-size:.85rem;color:#444}
header .top{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:.5rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:0 .8rem;margin:.3rem 0;font-size:.88rem;
line-height:1.35}dl.facts dt{font-weight:600}dl.facts dd{margin:0}nav.jump{font-size:.85rem}
nav.jump a{margin-left:.6rem}a.anchor-link{visibility:hidden;text-decoration:none;margin-left:.3rem}
h1:hover>a.anchor-link,h2:hover>a.anchor-link,h3:hover>a.anchor-link{visibility:visible}
.v{padding:.05rem .4rem;border-radius:.6rem;white-space:nowrap;font-weight:600}
.v-holds{background:#dcefe0;color:#14632b}.v-fails{background:#f8dcdc;color:#9b1c1c}
.v-open{background:#ececec;color:#444}
figure{margin:.8rem 0}figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.85rem;color:#444}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}
table.claims{width:100%}table.claims td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
table.claims tr.family th{background:#f2f2f2;font-size:.9rem}
table.claims details dl{display:grid;grid-template-columns:max-content 1fr;gap:0 .6rem;margin:.3rem 0;
font-size:.8rem}table.claims details dd{margin:0}summary{cursor:pointer}
.wide{max-width:100%;overflow-x:auto}img{max-width:100%;height:auto}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap}
section.nb{border-top:3px solid #444;margin-top:2.5rem}
.params{font-size:.8rem;color:#555}.error{color:#a00}
ol.toc li{margin:.15rem 0}ol.toc .figs{font-size:.85rem}ol.toc .figs a{margin-left:.5rem}
@media print{body{max-width:none;margin:0;font-size:10pt}nav.jump,.noprint{display:none}
a{color:inherit;text-decoration:none}.v,table.claims tr.family th{-webkit-print-color-adjust:exact;
print-color-adjust:exact}figure,img,tr{break-inside:avoid}section.nb{break-before:page}
.wide{overflow:visible}pre{white-space:pre-wrap}}"""
NAV = (("forest", "Forest plot"), ("claims", "Claims"), ("contents", "Contents"),
       ("provenance", "Provenance"))
OPEN_ON_PRINT = ("<script>addEventListener('beforeprint',()=>document.querySelectorAll('details')"
                 ".forEach(d=>d.open=true))</script>")


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


INCIDENTAL = re.compile(r"\s*(?:(?:Posix|Windows|Pure\w*)?Path\(.*\)|<[\w.]+(?: object)? at 0x[0-9a-f]+>)\s*",
                        re.DOTALL)
SAVED = re.compile(r"""figures\.save\([^)]*?["']([^"']+)["']\s*\)""")


def recorded_roots(out: Path, names: list[str]) -> list[str]:
    """The repository folders of the machines that made and render the record, longest first:
    this checkout's, the record folder's, and each notebook's `out_dir` parameter's
    (`<root>/outputs/<profile>`, as reproduce passed it)."""
    roots = {str(REPO_ROOT), str(out.resolve().parent.parent)}
    for n in names:
        nb = nbformat.read(out / f"{n}.ipynb", as_version=4)
        o = PurePosixPath(str(nb.metadata.get("papermill", {}).get("parameters", {}).get("out_dir", "")))
        if o.is_absolute() and len(o.parts) > 3 and o.parts[-2] == "outputs":
            roots.add(str(o.parent.parent))
    return sorted((r for r in roots if r not in ("/", ".")), key=len, reverse=True)


def relative(text: str, roots: list[str]) -> str:
    """`text` with every path under a recorded root written relative to the repository."""
    for r in roots:
        text = re.sub(re.escape(r) + r"(?:/|(?![\w.-]))", lambda m: "" if m[0].endswith("/") else ".", text)
    return text


@dataclass
class Section:
    """One executed notebook on the page: its anchor, title, figures (anchor, label) and HTML."""

    name: str
    title: str
    figures: list[tuple[str, str]] = field(default_factory=list)
    html: str = ""


def _label(name: str) -> str:
    return re.sub(r"^\d+_", "", name).replace("_", " ")


def _output_html(out: dict, result: bool, roots: list[str]) -> str:
    """One cell output: a figure, a table, or (for a cell's value) its text; '' for the rest — log
    streams, scraps, and a value that is only a path or an object's address (incidental)."""
    if out["output_type"] == "error":
        text = relative(f"{out['ename']}: {out['evalue']}", roots)
        return f'<pre class="error">{html.escape(text)}</pre>'
    data = out.get("data", {})
    if "text/html" in data:
        return f'<div class="wide">{relative("".join(data["text/html"]), roots)}</div>'
    if result and "text/plain" in data:  # a displayed widget's text/plain is a placeholder: skipped
        text = "".join(data["text/plain"])
        return "" if INCIDENTAL.fullmatch(text) else f"<pre>{html.escape(relative(text, roots))}</pre>"
    return ""


def notebook_section(path: Path, roots: list[str]) -> Section:
    """One executed notebook as a page section: prose, parameters, displayed outputs, in cell
    order; every figure anchored for the contents, every path relative to the repository."""
    from nbconvert.filters import markdown2html

    nb = nbformat.read(path, as_version=4)
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    sec = Section(path.stem, path.stem)
    parts = [f'<section class="nb" id="{path.stem}"><p class="small"><code>{path.name}</code></p>']
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if sec.title == path.stem and (m := re.match(r"#\s+(.+)", cell.source.strip())):
                sec.title = m[1].strip()
            parts.append(markdown2html(cell.source))
        elif INJECTED in cell.metadata.get("tags", []):  # where the run's parameters took effect
            text = relative(json.dumps(params, sort_keys=True, ensure_ascii=False), roots)
            text = html.escape(text, quote=False)
            parts.append(f'<p class="params">parameters: {text}</p>')
        elif cell.cell_type == "code":
            outs = cell.get("outputs", [])
            saved = SAVED.findall(cell.source)
            images = [o for o in outs if "image/png" in o.get("data", {})]
            for o in outs:
                if "image/png" not in o.get("data", {}):
                    parts.append(_output_html(o, o["output_type"] == "execute_result", roots))
                    continue
                k = len(sec.figures) + 1
                label = _label(saved[images.index(o)]) if len(saved) == len(images) else f"figure {k}"
                anchor = f"{path.stem}-fig{k}"
                sec.figures.append((anchor, label))
                png = "".join(o["data"]["image/png"]).replace("\n", "")
                parts.append(f'<figure id="{anchor}"><img src="data:image/png;base64,{png}" '
                             f'alt="{html.escape(label)}"><figcaption>Figure {path.stem[:2]}.{k}: '
                             f"{html.escape(label)}</figcaption></figure>")
    sec.html = "\n".join(p for p in parts if p) + "\n</section>"
    return sec


def _text(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def provenance_html(prov: dict, roots: list[str]) -> str:
    if not prov:
        return "<p>no provenance.json</p>"
    prov = dict(prov)
    status = prov.pop("status", [])
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th>"
                   f"<td>{html.escape(relative(_text(v), roots), quote=False)}</td></tr>"
                   for k, v in prov.items())
    return f"<table>{rows}</table>" + (pd.DataFrame(status).to_html(index=False) if status else "")


def names_in(out: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """The executed notebooks in `out`, in study order (the summary last), then any others."""
    have = {p.stem for p in out.glob("[0-9][0-9]_*.ipynb")}
    order = [n for n in available(notebooks) if n in have]
    return order + sorted(have - set(order))


def contents(sections: list[Section]) -> str:
    """The table of contents: each notebook's section, and its figures."""
    items = []
    for s in sections:
        figs = "".join(f'<a href="#{a}">{html.escape(label)}</a>' for a, label in s.figures)
        items.append(f'<li><a href="#{s.name}">{html.escape(s.title)}</a>'
                     + (f'<span class="figs"> — figures:{figs}</span>' if figs else "") + "</li>")
    return f'<ol class="toc">{"".join(items)}</ol>'


def build(out: Path, notebooks: Path = NOTEBOOKS) -> Path:
    """Write `out/index.html` from what `out` holds (nothing is rerun); returns its path."""
    names = names_in(out, notebooks)
    roots = recorded_roots(out, names)
    table = pd.read_csv(out / "claims.csv") if (out / "claims.csv").is_file() else None
    prov = answer.provenance(out)
    sections = [notebook_section(out / f"{n}.ipynb", roots) for n in names]
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in NAV)
    body = [answer.header(out, table, prov, nav), answer.forest_html(table),
            f'<h2 id="claims">{CLAIMS_HEADING}</h2>', answer.table_html(table),
            '<h2 id="contents">Contents</h2>', contents(sections), *(s.html for s in sections),
            '<h2 id="provenance">Provenance</h2>', provenance_html(prov, roots)]
    title = f"fedlib lab record: {html.escape(str(prov.get('profile') or out.name))}"
    head = (f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{STYLE}</style>{OPEN_ON_PRINT}")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>\n' + "\n".join(body)
            + "\n</body></html>\n")
    write_text(out / PAGE, page)
    return out / PAGE


def update_readme(out: Path, readme: Path = README) -> bool:
    """Refill README's claims block from `out/claims.csv`; True when README changed."""
    text = readme.read_text()
    new = with_claims(text, markdown_table(claims_view(out)))
    if new != text:
        write_text(readme, new)
    return new != text
