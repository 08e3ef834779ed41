"""The lab record's page in a real browser (headless Chromium, 1,400 × 900 px): no horizontal
overflow, every image decoded, the header and the forest plot on the first screen, no absolute
path and no `PosixPath(` in its text (`fedlib record` checks the same and stores the first screen
as outputs/quick/index.png). Skipped, with one line saying how to install it, where Chromium is absent
(.ci/run installs it)."""

from pathlib import Path

import pytest

from fedlib.hpc.store import REPO_ROOT
from fedlib.lab import browser, page
from fedlib.lab.browser import problems

from .synthetic import make_record

WIDTH, HEIGHT = 1400, 900
QUICK = REPO_ROOT / "outputs" / "quick"

needs_chromium = pytest.mark.skipif(browser.find() is None, reason=browser.INSTALL)


@needs_chromium
def test_committed_record_page_reads_in_a_browser(tmp_path):
    m = browser.measure(QUICK / page.PAGE, WIDTH, HEIGHT, screenshot=tmp_path / "index.png")
    assert problems(m) == []
    html = (QUICK / page.PAGE).read_text()
    assert len(m["images"]) == html.count("<img") >= 2  # every image on the page, forest and figures


@needs_chromium
def test_synthetic_record_page_reads_in_a_browser(tmp_path):
    out = make_record(tmp_path)
    m = browser.measure(page.build(out, out), WIDTH, HEIGHT, screenshot=tmp_path / "shot.png")
    assert problems(m) == []
    assert [i["alt"] for i in m["images"]][1:] == ["thing"]  # the forest plot, then the notebook's figure
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_the_checks_fail_on_a_page_that_reads_badly(tmp_path):
    """What the page used to be: a wide table first, a figure that does not decode, the
    recording machine's paths and a PosixPath under a figure, no header, no forest plot."""
    bad = tmp_path / "bad.html"
    wide = "".join(f"<td>column-{i}-value</td>" for i in range(80))
    bad.write_text(f"<!DOCTYPE html><html><body><table><tr>{wide}</tr></table>"
                   '<img src="data:image/png;base64,iVBORw0KGgoFIGURE" alt="figure">'
                   "<p>parameters: {\"out_dir\": \"/work/main/outputs/quick\"}</p>"
                   "<pre>PosixPath('/work/main/outputs/quick/00_quickstart.png')</pre>"
                   "<p>2/96 clients, 25 GB/s, see https://example.org/a/b</p></body></html>")
    found = problems(browser.measure(bad, WIDTH, HEIGHT))
    assert found[0].startswith("overflows sideways: ") and found[1:] == [
        "image not loaded: 'figure'", "the header is not on the first screen",
        "the forest plot is not on the first screen", "absolute path in the text: /work/main/outputs/quick",
        "absolute path in the text: /work/main/outputs/quick/00_quickstart.png",
        "a PosixPath repr in the text"]


def test_without_chromium_the_skip_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CHROMIUM", raising=False)
    assert browser.find() is None
    with pytest.raises(FileNotFoundError, match=r"apt-get install chromium"):
        browser.measure(Path("index.html"))
