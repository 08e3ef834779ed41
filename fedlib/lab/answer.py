"""The first screen of the lab record's page (`page`): what the record is and what held.

A reader opening `index.html` wants the answer before the evidence: a header that says what was
trained (a linear probe on frozen features is not a fine-tuned transformer), on which data, with
how many clients and seeds, on which machine and commit and when, and how many claims hold; then
the forest plot (`forest`), then the claims compact enough to fit the page — claim, effect [CI],
tolerance, verdict, budget — with every other column one click away in the claim's `<details>`.
Columns are read by name, so a claims table with more columns (`basis`, `holm`) shows them and
an older one with fewer still renders.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from . import claims as claims_mod
from . import forest
from .verdict import FAILS, HOLDS, OPEN

VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", OPEN: "open"}
COMPACT = ("claim", "effect (95% CI)", "tolerance", "verdict", "holm", "basis", "budget")
NUMBER, LEADING = r"\d+", r"^(\d+)"  # every number ("2/96"), the first ("5 × 1": seeds × strata)
HIDDEN = {"effect", "ci_low", "ci_high", "_family"}  # shown as "effect (95% CI)" or as the group rows


def trained(part: str) -> str:
    """A `trainable` value (`sweep.budget`) in a reader's words."""
    part = part.strip()
    if part == "head":
        return "linear probe (classifier head on frozen features)"
    if part == "full":
        return "whole model"
    if part == "all but embeddings":
        return "whole model but its embeddings"
    if m := re.fullmatch(r"layers above (\d+)", part):
        return f"top layers (above layer {m[1]}) + head"
    if m := re.fullmatch(r"top-(\d+) layers", part):
        return f"top {m[1]} encoder layer{'s' * (m[1] != '1')} + head"
    if m := re.fullmatch(r"LoRA r(\d+)", part):
        return f"LoRA adapters (r={m[1]})"
    return part


def _count(values: pd.Series, word: Callable[[str], str] = str) -> str:
    """"a (3 claims), b (1)": each value of a '/'-joined column once, with its number of claims."""
    c: Counter[str] = Counter()
    for v in values.dropna().astype(str):
        for part in dict.fromkeys(p.strip() for p in v.split("/") if p.strip() not in ("", "?")):
            c[word(part)] += 1
    items = [f"{k} ({n} claim{'s' * (n != 1)})" if i == 0 else f"{k} ({n})"
             for i, (k, n) in enumerate(c.most_common())]
    return ", ".join(items) or "—"


def _span(values: pd.Series, pattern: str) -> str:
    nums = [int(x) for v in values.dropna().astype(str) for x in re.findall(pattern, v)]
    if not nums:
        return "—"
    return f"{min(nums)}" if min(nums) == max(nums) else f"{min(nums)}–{max(nums)}"


def _when(prov: dict) -> str:
    try:
        a, b = (datetime.fromisoformat(prov[k]) for k in ("started", "ended"))
    except (KeyError, TypeError, ValueError):
        return str(prov.get("ended", "?"))
    minutes = (b - a).total_seconds() / 60
    return f"{a:%Y-%m-%d %H:%M}–{b:%H:%M} {b:%Z}".strip() + f" ({minutes:.0f} min)"


def counts(table: pd.DataFrame, column: str = "verdict") -> dict[str, int]:
    """How many claims have each verdict (the three always present, in that order). A row without
    a verdict is not resolved; a row without a Holm-adjusted one (outside its family) is not counted."""
    vals = table[column] if column in table else pd.Series(dtype=object)
    if column == "verdict":
        vals = vals.fillna(OPEN)
    c = Counter(v for v in vals.dropna().astype(str).str.strip() if v)
    others = {k: n for k, n in c.items() if k not in VERDICT_CLASS}
    return {v: c.get(v, 0) for v in (HOLDS, FAILS, OPEN)} | others


def badge(verdict: str, text: str | None = None) -> str:
    """A verdict as a coloured label (an unknown verdict: grey)."""
    css = VERDICT_CLASS.get(verdict, "open")
    return f'<span class="v v-{css}">{html.escape(verdict if text is None else text)}</span>'


def _badges(c: dict[str, int]) -> str:
    words = {HOLDS: "hold", FAILS: "do not hold", OPEN: "not resolved at this budget"}
    return " · ".join(badge(k, f"{n} {words.get(k, k)}") for k, n in c.items())


def _lede(table: pd.DataFrame) -> str:
    out = f'<p class="lede">{len(table)} claims checked: {_badges(counts(table))}'
    if "holm" in table:
        held = counts(table, "holm")
        out += f'<br><span class="small">Holm-adjusted ({sum(held.values())} rows): {_badges(held)}</span>'
    if "basis" in table:
        basis = Counter("projected" if "projected" in str(b) else "measured" for b in table["basis"])
        out += f' <span class="small">· {basis["measured"]} measured, {basis["projected"]} projected</span>'
    return out + "</p>"


def _made(prov: dict) -> str:
    commit = html.escape(str(prov.get("git_commit") or "?")[:10])
    machine = html.escape(", ".join(str(h) for h in prov.get("hosts") or []) or "?")
    soft = html.escape(" · ".join(f"{k} {prov[k]}" for k in ("python", "torch", "mpi4py") if prov.get(k)))
    dirty = " (dirty tree)" if prov.get("git_dirty") else ""
    return f"{html.escape(_when(prov))} on {machine} · commit <code>{commit}</code>{dirty} · {soft}"


def header(out: Path, table: pd.DataFrame | None, prov: dict, nav: str) -> str:
    """The page's header: what was run, by what, and how many claims hold."""
    facts: list[tuple[str, str]] = []
    lede = "<p class=lede>No claims table in this record (99_summary did not run).</p>"
    if table is not None and len(table):
        lede = _lede(table)

        def col(c: str) -> pd.Series:
            return table[c] if c in table else pd.Series(dtype=object)
        scale = (f"{_span(col('clients'), NUMBER)} clients a run, "
                 f"{_span(col('seeds_x_strata'), LEADING)} seeds an arm")
        facts += [(k, html.escape(v)) for k, v in (
            ("Trained", _count(col("trainable"), trained)), ("Models", _count(col("model"))),
            ("Data", _count(col("data"))), ("Scale", scale))]
    facts.append(("Made", _made(prov)))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    profile = html.escape(str(prov.get("profile") or out.name))
    return (f'<header id="top"><div class="top"><h1>fedlib lab record · {profile} profile</h1>'
            f'<nav class="jump">{nav}</nav></div>{lede}<dl class="facts">{rows}</dl></header>')


def forest_html(table: pd.DataFrame | None) -> str:
    """The forest plot as an embedded PNG (the page works offline), with its caption."""
    if table is None or not len(table):
        return ""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig = forest.draw(table)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    png = base64.b64encode(buf.getvalue()).decode()
    return (f'<figure id="forest" class="forest"><img src="data:image/png;base64,{png}" '
            f'alt="forest plot: each claim\'s effect and 95% CI against its tolerance, by verdict">'
            "<figcaption>Each claim's effect and 95 % confidence interval against the region where it "
            "holds (shaded: its tolerance or margin); colour and marker give the verdict. "
            'Details of each row: <a href="#claims">the claims table</a>.</figcaption></figure>')


def _cell(v: object) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return html.escape(f"{v:g}" if isinstance(v, float) else str(v))


def _row(r: pd.Series, cols: list[str], more: list[str]) -> str:
    cells = []
    for c in cols:
        v = _cell(r[c])
        if c == "claim":
            dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{_cell(r[k])}</dd>" for k in more if _cell(r[k]))
            cells.append(f"<td><details><summary>{v}</summary><dl>{dl}</dl></details></td>")
        elif c in ("verdict", "holm"):
            cells.append(f"<td>{badge(str(r[c])) if v else ''}</td>")
        else:
            cells.append(f'<td class="num">{v}</td>' if c == "effect (95% CI)" else f"<td>{v}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def table_html(table: pd.DataFrame | None) -> str:
    """The compact claims table, grouped by family as the forest plot is; a claim's other columns
    in its `<details>`; `claims.csv` linked for the whole table."""
    if table is None:
        return "<p>no claims.csv: 99_summary did not run in this record</p>"
    full = table.assign(**{c: table.get(c, pd.NA) for c in claims_mod.COLUMNS})
    view = table.assign(**{"effect (95% CI)": claims_mod.show(full)["effect (95% CI)"],
                           "_family": table.apply(forest.family, axis=1) if len(table) else []})
    cols = [c for c in COMPACT if c in view]
    more = [c for c in view.columns if c not in cols and c not in HIDDEN]
    families = [f for f in forest.FAMILIES if f in set(view["_family"])] + list(view["_family"])
    body = []
    for fam in dict.fromkeys(families):
        body.append(f'<tr class="family"><th colspan="{len(cols)}">{html.escape(fam.capitalize())}</th></tr>')
        body += [_row(r, cols, more) for _, r in view[view["_family"] == fam].iterrows()]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    return (f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            '<p class="small">Click a claim for how it was measured, its note and what produced it '
            f'({html.escape(", ".join(more))}); the whole table: <a href="claims.csv">claims.csv</a>.</p>')


def provenance(out: Path) -> dict:
    path = out / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}
