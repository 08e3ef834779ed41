"""Notebooks: one papermill `parameters` cell whose keys match every params/<profile>/ YAML,
committed without outputs, `reproduce` stopping at a failing notebook, and smoke runs on 2 MPI
engines: 00_quickstart, and 03_heterogeneity followed by 99_summary's claims table."""

import ast
import json
import os
import time

import nbformat
import pandas as pd
import pytest
import scrapbook as sb
import yaml

from fedlib.lab import reproduce, scaling, verdict

NOTEBOOKS = sorted(reproduce.NOTEBOOKS.glob("*.ipynb"))
PROFILES = sorted(p.name for p in reproduce.PARAMS.iterdir() if p.is_dir())


def _reproduce(profile: str, *names: str) -> list[str]:
    """`python -m fedlib reproduce` into the `early` command's folder ({out}): the three tests
    below run their notebooks from the start of the session (conftest.Lane) and read them here."""
    return ["-m", "fedlib", "reproduce", "--profile", profile, *[a for n in names for a in ("--nb", n)],
            "--out-root", "{out}"]


def _record(done, profile):
    """The profile's folder and what `reproduce.run` returned: one row per notebook executed
    (its reproduce_times.csv)."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.out / profile, pd.read_csv(done.out / profile / "reproduce_times.csv")


def _parameters(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    return {n.targets[0].id for n in ast.parse(cells[0].source).body if isinstance(n, ast.Assign)}


def test_there_are_notebooks():
    assert {"00_quickstart", "01_comm_scaling", "02_accuracy_vs_clients", "99_summary"} <= {
        p.stem for p in NOTEBOOKS}
    assert reproduce.available()[-1] == "99_summary"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_params_files_match_parameters_cell(nb):
    keys = _parameters(nb)
    for profile in ("quick", "full"):
        assert set(reproduce.parameters(profile, nb.stem)) == keys, f"params/{profile}/{nb.stem}.yaml"
    for profile in PROFILES:
        path = reproduce.PARAMS / profile / f"{nb.stem}.yaml"
        if path.is_file():
            assert set(yaml.safe_load(path.read_text())) == keys, str(path)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(nb):
    """papermill's line parser skips an assignment whose value contains '=' (then warns
    'Passed unknown parameter' at run time): every parameter must be visible to it."""
    import papermill as pm

    assert set(pm.inspect_notebook(str(nb))) == _parameters(nb)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb):
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{nb.name}: strip outputs"


def test_reproduce_stops_at_failing_notebook(tmp_path):
    books, params = tmp_path / "nb", tmp_path / "params"
    books.mkdir()
    (params / "p").mkdir(parents=True)
    for name, body in (("01_ok", "x = 1"), ("02_bad", "1 / 0"), ("03_never", "x = 3")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
                                             nbformat.v4.new_code_cell(body)])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, books / f"{name}.ipynb")
        (params / "p" / f"{name}.yaml").write_text("profile: p\nout_dir: x\n")
    with pytest.raises(reproduce.NotebookFailed, match=r"02_bad failed in cell .*ZeroDivisionError"):
        reproduce.run("p", notebooks=books, out_root=tmp_path / "out", params=params)
    out = tmp_path / "out" / "p"
    assert (out / "01_ok.ipynb").is_file() and (out / "01_ok.html").is_file()
    assert (out / "02_bad.ipynb").is_file() and not (out / "03_never.ipynb").exists()
    times = (out / "reproduce_times.csv").read_text()
    assert "01_ok" in times and "failed" in times


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.early(quickstart=_reproduce("tiny", "00_quickstart"))
def test_quickstart_notebook_on_two_mpi_engines(early):
    out, table = _record(early("quickstart"), "tiny")
    assert table["status"].tolist() == ["ok"]
    scraps = sb.read_notebook(str(out / "00_quickstart.ipynb")).scraps
    m = {k: v.data for k, v in scraps.items()}
    assert m["ranks"] == 2
    assert m["accuracy"] > m["majority_rate"] + 0.05  # MiniLM learns SciCite (was also a 1-process test)
    assert m["breakdown_error"] < 0.02
    assert (out / "00_quickstart.png").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["profile"] == "tiny" and prov["torch"] and prov["ended"]
    assert prov["status"][0]["status"] == "ok"
    assert len(list((out / "runs").iterdir())) == 1  # its fresh run folder


def test_a_rerun_never_collides_and_keeps_the_earlier_record(tmp_path):
    """Two reproduce invocations of one notebook: each run gets its own fresh folder, and the first
    record moves to history/ whole (a toy notebook: the mechanism, not the training)."""
    books, params = tmp_path / "nb", tmp_path / "params" / "p"
    books.mkdir()
    params.mkdir(parents=True)
    (params / "01_runs.yaml").write_text("profile: p\nout_dir: x\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
        nbformat.v4.new_code_cell("from fedlib.lab import sweep\nsweep.fresh_dir(f'{out_dir}/runs', 'r')")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, books / "01_runs.ipynb")
    for _ in range(2):
        table = reproduce.run("p", notebooks=books, out_root=tmp_path / "out", params=params.parent)
        assert table["status"].tolist() == ["ok"]
    out = tmp_path / "out" / "p"
    assert len(list((out / "runs").iterdir())) == 2  # one fresh run folder each
    (kept,) = (out / "history").iterdir()  # the first record, moved aside whole
    assert (kept / "01_runs.ipynb").is_file() and (out / "01_runs.ipynb").is_file()


def test_archive_moves_an_earlier_record_aside(tmp_path):
    for f in ("05_privacy.ipynb", "05_privacy.html", "05_privacy_ci.csv", "06_system.csv"):
        (tmp_path / f).write_text(f)
    moved = reproduce.archive(tmp_path, "05_privacy", "2026-11-25T17:00:00+00:00")
    assert sorted(f.name for f in moved) == ["05_privacy.html", "05_privacy.ipynb", "05_privacy_ci.csv"]
    kept = tmp_path / "history" / "2026-11-25T170000+0000"
    assert (kept / "05_privacy_ci.csv").read_text() == "05_privacy_ci.csv"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["06_system.csv", "history"]
    assert reproduce.archive(tmp_path, "05_privacy", "later") == []  # nothing left to move


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.early(heterogeneity=_reproduce("tiny", "03_heterogeneity", "99_summary"))
def test_heterogeneity_notebook_and_its_claims(early):
    """03 with the quick profile's `setup` (head on cached features) on MAG's tiny slice, then
    99_summary's claims table from what 03 wrote: 3 seeds per setting, the budget names the
    trainable part, and the IID reference learns."""
    out, table = _record(early("heterogeneity"), "tiny")
    assert table["status"].tolist() == ["ok", "ok"]
    m = {k: v.data for k, v in sb.read_notebook(str(out / "03_heterogeneity.ipynb")).scraps.items()}
    assert m["seeds"] == {"head": 3}
    acc, tv = m["accuracy_by_setting"]["head"], m["tv_by_setting"]["head"]
    assert set(acc) == {"kind=iid", "kind=dirichlet alpha=0.3"}
    runs = pd.read_csv(out / "03_heterogeneity.csv")
    assert len(runs) == 6 and set(runs["trainable"]) == {"head"} and set(runs["data"]) == {"mag"}
    assert acc["kind=iid"] > runs["majority_rate"].iloc[0] + 0.2  # 7 fields: 0.15
    assert tv["kind=dirichlet alpha=0.3"] > tv["kind=iid"]
    claims = pd.read_csv(out / "claims.csv").set_index("claim")
    probe = "linear probe on frozen features (2,695 params)"  # MiniLM's head on 7 fields: 7 x (384 + 1)
    row = claims.loc[f"accuracy non-inferior under Dirichlet label skew α=0.3 vs IID — {probe}"]
    assert row["n"] == 3 and row["budget"] == "8 clients, 3 rounds, head, 3 seeds"
    lo, hi, margin = float(row["ci_low"]), float(row["ci_high"]), verdict.TOLERANCES["accuracy"].lo
    rule = verdict.HOLDS if lo >= margin else verdict.FAILS if hi < margin else verdict.OPEN  # claims.py
    assert row["verdict"] == rule, (lo, hi, row["note"])  # the reference learns (above): the CI decides
    assert "paired over seeds" in row["measure"] and row["seeds_x_strata"] == "3 × 1"
    made = (row["profile"], row["data"], row["trainable"], str(row["cached_features"]))
    assert made == ("tiny", "mag", probe, "True")
    assert row["eval_examples"] == "300 of 500" and len(str(row["git_commit"])) >= 10
    assert '<h2 id="claims">Claims</h2>' in (page := (out / "index.html").read_text()) and row.name in page
    not_run = claims.loc["accuracy non-inferior under Dirichlet label skew α=1 vs IID"]
    assert not_run["note"] == "not run in this profile"


def test_reproduce_prints_and_records_the_disk_it_wrote(tmp_path, capsys):
    """What one invocation wrote (not an earlier record moved to history/) is printed and kept in
    provenance.json; before a full-profile run the size model's estimate is printed too."""
    books, params = tmp_path / "nb", tmp_path / "params"
    books.mkdir()
    for profile in ("p", "full"):
        (params / profile).mkdir(parents=True)
        (params / profile / "01_write.yaml").write_text(f"profile: {profile}\nout_dir: x\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
        nbformat.v4.new_code_cell("import pathlib\n"
                                  "(pathlib.Path(out_dir) / 'blob.bin').write_bytes(b'x' * 3_000_000)")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, books / "01_write.ipynb")
    out = tmp_path / "out" / "p"
    out.mkdir(parents=True)
    (out / "01_write.ipynb").write_bytes(b"y" * 5_000_000)  # an earlier record: moved, not counted
    os.utime(out / "01_write.ipynb", (time.time() - 3600, time.time() - 3600))
    reproduce.run("p", notebooks=books, out_root=tmp_path / "out", params=params)
    wrote = json.loads((out / "provenance.json").read_text())["disk_bytes"]
    assert 3_000_000 < wrote < 3_500_000  # the blob plus the executed copy, HTML and records
    printed = capsys.readouterr().out
    assert f"reproduce (p): wrote {wrote / 1e6:.1f} MB into {out}" in printed
    assert "will write about" not in printed
    reproduce.run("full", notebooks=books, out_root=tmp_path / "out", params=params)
    assert "reproduce (full): 0 runs will write about 0 B into" in capsys.readouterr().out


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.early(smoke=_reproduce("smoke"))
def test_smoke_profile_runs_every_notebook_on_the_full_profiles_paths(early):
    """params/smoke: every notebook with the full profile's grids and code paths at toy size
    (tiny ALBERT / BERT / DeBERTa-v2 checkpoints built by reproduce), what a cluster job reaches
    only after hours: 06's local-steps sweep and 07's `bench system` crashed there (RunConfig has
    no .replace). Each notebook's recorded metrics are read back."""
    out, table = _record(early("smoke"), "smoke")
    assert table["status"].tolist() == ["ok"] * len(NOTEBOOKS), table
    m = {p.stem: {k: v.data for k, v in sb.read_notebook(str(out / p.name)).scraps.items()}
         for p in NOTEBOOKS}
    families = {"albert", "bert", "deberta-v2"}

    assert m["00_quickstart"]["ranks"] == 1 and m["00_quickstart"]["breakdown_error"] < 0.02
    comm = pd.read_csv(out / "01_comm_scaling_runs.csv")
    assert len(comm) == 2 * 2 * 2 * 2  # ranks x algorithms x payloads x replicates
    assert set(comm["algorithm"]) == {"collective", "p2p"} and (comm["clients"] == comm["ranks"]).all()
    c = m["01_comm_scaling"]
    assert set(c["payload_mb"]) == {"head (MiniLM probe)", "LoRA r8 (BERT-base)"}
    assert {f["form"] for f in c["hockney_fit"]} == {f.name for fs in scaling.FORMS.values() for f in fs}
    assert {r["basis"].split(" (")[0] for r in c["comm_claims"]} == {"measured", "projected"}
    acc = pd.read_csv(out / "02_accuracy_vs_clients.csv")
    assert len(acc) == 3 * 2 * 2 * 2 and set(acc["partition.kind"]) == {"iid", "dirichlet"}
    assert {p.rsplit("/", 1)[-1] for p in m["02_accuracy_vs_clients"]["accuracy_by_clients"]} == families
    # 03 and 04: two tiers (the whole tiny BERT; its layer on cached embeddings, fewer settings); 04's
    # runs without dropout and 05's non-private fine-tuned tier are 03's IID runs, reused
    het = m["03_heterogeneity"]
    assert {k: len(v) for k, v in het["accuracy_by_setting"].items()} == {"full": 4, "all but embeddings": 2}
    assert het["seeds"] == {"full": 2, "all but embeddings": 2}
    assert {k: set(v) for k, v in m["04_dropout"]["aggregated_by_dropout"].items()} == {
        "full": {"0.0", "0.5"}, "all but embeddings": {"0.0", "0.5"}}
    drop = pd.read_csv(out / "04_dropout.csv")
    assert drop["reused"].tolist() == [(p == 0.0) for p in drop["participation.dropout"]]
    het_runs = pd.read_csv(out / "03_heterogeneity.csv").set_index(["trainable", "setting", "seed"])
    mine = drop[drop["participation.dropout"] == 0.0].set_index(["trainable", "seed"])
    for (part, seed), r in mine.iterrows():  # the same run: its folder and its numbers
        ref = het_runs.loc[(part, "kind=iid", seed)]
        assert (r["run_dir"], r["accuracy"]) == (ref["run_dir"], ref["accuracy"])
    eps = m["05_privacy"]["epsilon_by_setting"]
    assert len(eps) == 3 and all(0 < e <= 8.0 + 1e-6 for e in eps.values())  # client-level, DP-SGD x2
    priv = pd.read_csv(out / "05_privacy.csv")
    tier = priv[priv["trainable"] == "all but embeddings"]
    assert len(tier) == 4 and tier["reused"].tolist() == [True, True, False, False]

    s = m["06_system_strategies"]
    assert [r["client.local_steps"] for r in s["local_steps_tradeoff"]] == [1, 2]
    assert set(s["accuracy_by_strategy"]) == {"full fine-tuning fp32", "LoRA r8", "bf16 payload",
                                              "bf16+EF payload"}
    assert 0 < s["lora_payload_fraction"] < 0.5
    assert "bf16+EF p2p" in set(pd.read_csv(out / "06_system_strategies.csv")["strategy"])
    b = m["07_benchmarks"]
    assert b["benchmarks_missing"] == [] and b["benchmark_ratios"]["comm_wait_vs_p2p_at_max_clients"]
    assert (out / "bench" / "system_local_steps.csv").is_file()
    a = m["08_async"]  # every arm ran every seed to sync's virtual time; sync is the reference
    deadline = "sync FedAvg, deadline p80"
    assert set(a["accuracy_at_budget_by_arm"]) == {"sync FedAvg", "FedBuff K=2", "FedAsync", deadline}
    assert a["seeds"] == 2 and a["acc_diff_by_arm"]["sync FedAvg"] == 0.0
    assert set(a["time_ratio_by_arm"]) == set(a["time_verdict_by_arm"]) == {"FedBuff K=2", "FedAsync",
                                                                             deadline}
    assert set(a["goal_by_arm"]) == {"FedBuff K=2"}
    pilot = pd.read_csv(out / "08_async_pilot.csv")  # the target, fixed by sync alone on its own seed
    assert set(pilot["seed"]) == {100} and set(pilot["arm"]) == {"sync FedAvg"}
    paired = pd.read_csv(out / "08_async_paired.csv")
    assert paired["target"].nunique() == 1 and paired["target"].iloc[0] == pytest.approx(a["target"])
    assert a["target"] == pytest.approx(pilot["target"].iloc[0])
    curves = pd.read_csv(out / "08_async_curves.csv")  # every run reaches its seed's sync time
    ends = curves.groupby(["seed", "arm"])["virtual_s"].max().unstack()
    assert (ends.ge(ends["sync FedAvg"], axis=0)).all().all()
    assert (paired.groupby("seed")["budget_s"].nunique() == 1).all()
    runs = pd.read_csv(out / "08_async.csv")  # the deadline arm dropped its slowest clients
    late = runs[runs["arm"] == deadline]
    assert len(late) == 2 and (late["late"] > 0).all() and (late["rounds"] > 4).all()
    assert set(a["wall_ratio_by_arm"]) == {"FedBuff K=2 (wall)"}
    wall = pd.read_csv(out / "08_async_wall_curves.csv")
    assert set(wall["arm"]) == {"sync FedAvg", "FedBuff K=2 (wall)"} and (wall["wall_s"] > 0).all()
    assert set(m["99_summary"]["notebooks_recorded"]) == {p.stem for p in NOTEBOOKS} - {"99_summary"}
    assert (out / "claims.csv").is_file()

    # disk (issue 18): only the single run of 00 exports; sweeps and benchmarks write no model/
    exports = sorted(p.parent.parent.name for p in out.glob("**/model/config.json"))
    assert exports == ["quickstart"]
    assert not list(out.glob("runs/**/residuals/*.pt"))  # error feedback's files went with the runs
    assert json.loads((out / "provenance.json").read_text())["disk_bytes"] < 100e6


def test_out_placeholder_names_the_profiles_output_folder(tmp_path):
    got = reproduce.expand({"models": ["<out>/models/bert"], "setup": {"model.name": "<out>/m"}, "rounds": 2,
                            "bench_dir": "<out>/bench", "plain": "outputs/x"}, tmp_path)
    root = str(tmp_path.resolve())
    assert got == {"models": [f"{root}/models/bert"], "setup": {"model.name": f"{root}/m"}, "rounds": 2,
                   "bench_dir": f"{root}/bench", "plain": "outputs/x"}
