"""fedlib.lab.page (and .answer) on a synthetic record (tests/lab/synthetic.py): the page opens
with the answer — header, verdict counts, forest plot, a compact claims table — then the contents
and the notebooks; no absolute path of the recording machine and no incidental value reaches it;
columns are read by name (newer ones shown, older tables still render)."""

import re

import pandas as pd
import pytest

from fedlib.lab import answer, page

from .synthetic import CLAIMS, RECORDED, make_record


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = make_record(tmp_path_factory.mktemp("lab"))
    page.build(out, out)  # no source notebooks there: the record's own order
    return out, (out / "index.html").read_text()


def test_the_answer_comes_first(built):
    _, html = built
    marks = ['<header id="top">', "fedlib lab record · quick profile", "4 claims checked",
             '<figure id="forest"', '<h2 id="claims">', '<h2 id="contents">',
             '<section class="nb" id="01_a">', '<h2 id="provenance">']
    at = [html.find(m) for m in marks]
    assert -1 not in at and at == sorted(at), dict(zip(marks, at, strict=True))


def test_header_says_what_was_trained_and_how_many_claims_hold(built):
    _, html = built
    head = html[:html.index('<figure id="forest"')]
    assert re.search(r'v-holds">1 hold<.*v-fails">1 do not hold<.*v-open">2 not resolved at this budget<',
                     head)
    assert ('Holm-adjusted (2 rows): <span class="v v-holds">1 hold</span> · <span class="v v-fails">0 do '
            'not hold</span> · <span class="v v-open">1 not resolved at this budget</span>') in head
    assert "3 measured, 1 projected" in head
    assert ("<dt>Trained</dt><dd>linear probe (classifier head on frozen features) (1 claim), "
            "top layers (above layer 5) + head (1), whole model (1), "
            "linear probe on frozen features (2,695 params) (1), whole model (22.7M params) (1)</dd>") in head
    assert "<dt>Data</dt><dd>mag (3 claims), scicite (1)</dd>" in head
    assert "<dt>Scale</dt><dd>2–32 clients a run, 2–5 seeds an arm</dd>" in head
    assert "2026-11-29 05:00–06:00 UTC (60 min) on nodeA · commit <code>abcdef1234</code>" in head


def test_claims_table_is_compact_grouped_and_keeps_the_rest_one_click_away(built):
    _, html = built
    start = html.index('<table class="claims">')
    table = html[start:html.index("</table>", start)]
    assert re.findall(r"<th>([^<]+)</th>", table[:table.index("</thead>")]) == [
        "claim", "effect (95% CI)", "tolerance", "verdict", "holm", "basis", "budget"]
    families = re.findall(r'<tr class="family"><th colspan="7">(\w+)</th>', table)
    assert families == ["Accuracy", "Communication", "Asynchrony"]
    assert "<summary>accuracy non-inferior under skew (linear probe)</summary>" in table
    assert "<dt>measure</dt><dd>Δ accuracy vs reference, paired over seeds</dd>" in table
    assert '<td class="num">-0.05 [-0.06, -0.04]</td>' in table
    assert '<span class="v v-fails">does not hold</span></td><td><span class="v v-open">not resolved' in table


def test_no_absolute_path_and_no_incidental_value(built):
    out, html = built
    assert RECORDED not in html and str(out) not in html
    assert "PosixPath(" not in html and " at 0x" not in html and "LOG-NOISE" not in html
    assert '"out_dir": "outputs/quick"' in html  # the parameters line, relative to the repository
    assert "<td>outputs/quick/runs/acc-00</td>" in html
    assert "<pre>42</pre>" in html  # a value a cell means to show stays


def test_wide_tables_scroll_inside_their_box(built):
    _, html = built
    assert '<div class="wide"><table><tr><td>column-0' in html


def test_contents_link_each_section_and_figure(built):
    _, html = built
    assert '<a href="#01_a">01 · A study</a>' in html
    assert '<a href="#01_a-fig1">thing</a>' in html
    assert '<figure id="01_a-fig1"><img src="data:image/png;base64,' in html
    assert "Figure 01.1: thing" in html


def test_page_prints_with_its_details_open(built):
    _, html = built
    assert "@media print" in html and "beforeprint" in html


@pytest.mark.parametrize(("text", "want"), [
    ("/r/outputs/quick/x.png", "outputs/quick/x.png"), ("in /r, then", "in ., then"),
    ("/r2/x and /r", "/r2/x and ."), ('"/a/b/r/x"', '"x"')])
def test_relative_known_answers(text, want):
    assert page.relative(text, ["/a/b/r", "/r"]) == want


def test_roots_come_from_the_recorded_out_dir(built):
    out, _ = built
    assert RECORDED in page.recorded_roots(out, ["01_a"])


def test_an_older_claims_table_still_renders(tmp_path):
    out = make_record(tmp_path)
    CLAIMS[["claim", "effect", "ci_low", "ci_high", "n", "verdict"]].to_csv(out / "claims.csv", index=False)
    html = (page.build(out, out)).read_text()
    head = html[html.index('<table class="claims">'):html.index("</thead>")]
    assert re.findall(r"<th>([^<]+)</th>", head) == ["claim", "effect (95% CI)", "verdict"]
    assert "Holm" not in html[:html.index('<figure id="forest"')] and '<figure id="forest"' in html


def test_without_claims_the_page_says_so(tmp_path):
    out = make_record(tmp_path)
    (out / "claims.csv").unlink()
    html = page.build(out, out).read_text()
    assert "no claims.csv" in html and '<figure id="forest"' not in html


@pytest.mark.parametrize(("part", "words"), [
    ("head", "linear probe (classifier head on frozen features)"), ("full", "whole model"),
    ("layers above 4", "top layers (above layer 4) + head"), ("top-1 layers", "top 1 encoder layer + head"),
    ("top-2 layers", "top 2 encoder layers + head"), ("LoRA r8", "LoRA adapters (r=8)"), ("odd", "odd")])
def test_trained_in_a_readers_words(part, words):
    assert answer.trained(part) == words


def test_counts_known_answer():
    t = pd.DataFrame({"verdict": ["holds", "holds", "does not hold", None, "odd"]})
    assert answer.counts(t) == {"holds": 2, "does not hold": 1, "not resolved at this budget": 1, "odd": 1}
