"""A small lab record made by hand, so the page builder (fedlib.lab.page) and its browser test do
not depend on the committed record alone: one executed notebook with what a real one leaves — a
figure saved by `figures.save`, a table wider than the page, a log stream, a cell ending in a path
and one in an object's address, parameters with the absolute paths of the machine that ran it —
a claims table with every family and the newer columns (`basis`, `holm`), and provenance."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nbformat
import pandas as pd

RECORDED = "/home/someone/fedlib"  # the repository folder on the machine that made the record

CLAIMS = pd.DataFrame([
    {"claim": "accuracy non-inferior under skew (linear probe)", "effect": -0.01, "ci_low": -0.02,
     "ci_high": 0.0, "n": 5, "measure": "Δ accuracy vs reference, paired over seeds",
     "tolerance": "Δ accuracy ≥ −0.03", "budget": "32 clients, 10 rounds, head, 5 seeds", "verdict": "holds",
     "holm": "holds", "basis": "measured", "note": "non-inferior", "model": "minilm", "data": "mag",
     "trainable": "head", "clients": "32", "seeds_x_strata": "5 × 1"},
    {"claim": "accuracy non-inferior under DP-SGD (top layer)", "effect": -0.05, "ci_low": -0.06,
     "ci_high": -0.04, "n": 3, "measure": "Δ accuracy vs reference, paired over seeds",
     "tolerance": "Δ accuracy ≥ −0.03", "budget": "2/8 clients, 4 rounds, layers above 5, 3 seeds",
     "verdict": "does not hold", "holm": "not resolved at this budget", "basis": "measured",
     "note": "inferior", "model": "minilm", "data": "mag", "trainable": "layers above 5", "clients": "2/8",
     "seeds_x_strata": "3 × 1"},
    {"claim": "comm time proportional to model size (p2p)", "effect": 1.0, "ci_low": 0.7, "ci_high": 1.3,
     "n": 4, "measure": "log-log slope", "tolerance": "log-log slope in [0.8, 1.25]",
     "budget": "8 clients", "verdict": "not resolved at this budget", "holm": "",
     "basis": "projected (hockney)",
     "note": "", "model": "bert-base-uncased", "data": "scicite", "trainable": "full", "clients": "8",
     "seeds_x_strata": "2 × 1"},
    {"claim": "FedBuff K=4 reaches sync FedAvg's final accuracy in less virtual time", "effect": 0.5,
     "ci_low": -0.2, "ci_high": 1.2, "n": 3, "measure": "time ratio", "tolerance": "time ratio < 1",
     "budget": "32 clients", "verdict": "not resolved at this budget", "holm": "", "basis": "measured",
     "note": "CI straddles 1", "model": "minilm", "data": "mag", "clients": "32",
     "trainable": "linear probe on frozen features (2,695 params) / whole model (22.7M params)",
     "seeds_x_strata": "3 × 1"},
])


def png(width: float = 4.0, height: float = 2.0) -> str:
    """A real PNG (base64), as a notebook's figure output holds it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    return base64.b64encode(buf.getvalue()).decode()


def notebook(out: Path) -> nbformat.NotebookNode:
    """01_a as papermill leaves it after running on the recording machine."""
    v4 = nbformat.v4
    params = {"profile": "quick", "out_dir": f"{RECORDED}/outputs/quick", "seeds": [0, 1]}
    injected = v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    plot = v4.new_code_cell('fig, ax = plt.subplots()\nfigures.save(fig, out, "01_thing")')
    plot.outputs = [
        v4.new_output("stream", name="stderr", text="LOG-NOISE 50%|#####|"),
        v4.new_output("execute_result", execution_count=3,
                      data={"text/plain": f"PosixPath('{RECORDED}/outputs/quick/01_thing.png')"}),
        v4.new_output("display_data", data={"image/png": png(), "text/plain": "<Figure size 400x200>"})]
    wide = "".join(f"<td>column-{i}-with-a-long-value</td>" for i in range(60))
    tables = v4.new_code_cell("runs\nstyler")
    tables.outputs = [
        v4.new_output("display_data", data={"text/html": f"<table><tr>{wide}</tr></table>"}),
        v4.new_output("execute_result", execution_count=4,
                      data={"text/plain": "<pandas.io.formats.style.Styler at 0x7f29478e7750>"}),
        v4.new_output("execute_result", execution_count=5, data={"text/plain": "42"}),
        v4.new_output("execute_result", execution_count=6,
                      data={"text/html": f"<table><td>run_dir</td><td>{out}/runs/acc-00</td></table>"})]
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 01 · A study\n\nwhy it matters"),
                                v4.new_code_cell('profile = "quick"\nout_dir = "outputs/quick"\nseeds = [0]'),
                                injected, plot, tables])
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["papermill"] = {"parameters": params}
    return nb


def make_record(root: Path) -> Path:
    """`root/outputs/quick` holding the record above; returns that folder."""
    out = root / "outputs" / "quick"
    out.mkdir(parents=True)
    nbformat.write(notebook(out), out / "01_a.ipynb")
    CLAIMS.to_csv(out / "claims.csv", index=False)
    prov = {"git_commit": "abcdef1234567890", "git_dirty": False, "python": "3.11.7", "torch": "2.13.0+cpu",
            "hosts": ["nodeA"], "profile": "quick", "notebooks": ["01_a"],
            "started": "2026-11-29T05:00:00+00:00", "ended": "2026-11-29T06:00:00+00:00",
            "status": [{"notebook": "01_a", "status": "ok"}]}
    (out / "provenance.json").write_text(json.dumps(prov))
    return out
