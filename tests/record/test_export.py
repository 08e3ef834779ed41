"""Export: a run's global model as a Hugging Face folder scores what the run's last evaluation
scored, merged LoRA included; `--adapter` writes what peft loads."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from fedlib import cli, config, runner
from fedlib.learn import data, models
from fedlib.learn import tiny as tc
from fedlib.sim import client
from fedlib.wire.flat import FlatParams

LABELS = ["background", "method", "result"]


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    return tc.checkpoint(root / "ckpt", "bert", tc.wordpiece_vocab(root / "wp"))


@pytest.fixture
def run(bert_dir, tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))

    def go(**extra):
        # seed 3: a run whose model does not predict one class everywhere (LoRA too; seeds take 4 words)
        cfg = tiny_cfg(**{"model.name": str(bert_dir), "model.overrides": {}, "client.lr": 1e-4, "seed": 3,
                          **extra})
        return cfg, runner.run(cfg, progress=False)
    return go


def _accuracy(model, cfg: config.RunConfig, tokenizer) -> float:
    """The run's evaluation (same split, same batching) of a model loaded from outside fedlib."""
    ev = data.load(cfg.data, tokenizer).eval
    cm, _ = client.confusion(model, ev, len(LABELS))
    return client.scores(cm)[0]


def _logits(model, cfg, tokenizer):
    model.eval()
    b = data.load(cfg.data, tokenizer).eval.batch(torch.arange(16))
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


def _reference(cfg, res):
    m = models.build(cfg.model, num_labels=len(LABELS), seed=cfg.seed)
    FlatParams(m).set(res.state.weights)
    return m


@pytest.mark.parametrize("lora", [0, 4])
def test_exported_model_scores_the_runs_last_accuracy(run, lora, tmp_path):
    cfg, res = run(**{"model.lora_r": lora})
    tok = models.load_tokenizer(cfg.model)
    assert cli.main(["export", str(cfg.run_dir), str(tmp_path / "again")]) == 0  # from the checkpoint
    assert res.summary["accuracy"] != res.summary["majority_rate"]  # not a constant prediction
    untrained = models.build(cfg.model, num_labels=len(LABELS), seed=cfg.seed)
    trained = _logits(_reference(cfg, res), cfg, tok)
    assert (trained - _logits(untrained, cfg, tok)).abs().max() > 1e-3  # exporting init would fail
    for out in (cfg.run_dir / "model", tmp_path / "again"):  # the end of the run, and the CLI
        m = AutoModelForSequenceClassification.from_pretrained(out)
        assert type(m).__name__ == "BertForSequenceClassification"  # LoRA merged: no peft left
        assert m.config.id2label == dict(enumerate(LABELS)) and m.config.label2id["result"] == 2
        assert abs(_accuracy(m, cfg, tok) - res.summary["accuracy"]) <= 1e-6
        torch.testing.assert_close(_logits(m, cfg, tok), trained, rtol=1e-5, atol=1e-5)
        exported_tok = AutoTokenizer.from_pretrained(out)
        assert torch.equal(data.load(cfg.data, exported_tok).eval.input_ids,
                           data.load(cfg.data, tok).eval.input_ids)


def test_adapter_alone_loads_with_peft(run, bert_dir, tmp_path):
    from peft import PeftModel

    cfg, res = run(**{"model.lora_r": 4, "federation.export": False})
    assert not (cfg.run_dir / "model").exists()
    out = tmp_path / "adapter"
    assert cli.main(["export", str(cfg.run_dir), str(out), "--adapter"]) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert json.loads((out / "labels.json").read_text()) == LABELS
    base = AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=len(LABELS))
    m = PeftModel.from_pretrained(base, out)
    tok = AutoTokenizer.from_pretrained(out)
    assert abs(_accuracy(m, cfg, tok) - res.summary["accuracy"]) <= 1e-6
    torch.testing.assert_close(_logits(m, cfg, tok), _logits(_reference(cfg, res), cfg, tok),
                               rtol=1e-5, atol=1e-5)


def test_export_refuses_what_it_cannot_write(run, tmp_path, capsys):
    cfg, _ = run(**{"federation.rounds": 1})
    assert cli.main(["export", str(cfg.run_dir), str(tmp_path / "x"), "--adapter"]) == 2
    assert "model.lora_r is 0" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert cli.main(["export", str(cfg.run_dir), str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").is_file()


def test_export_into_a_file_is_one_line(run, tmp_path, capsys):
    cfg, _ = run(**{"federation.rounds": 1, "federation.export": False})
    target = tmp_path / "model.bin"
    target.write_text("mine")
    capsys.readouterr()  # the run's own output
    assert cli.main(["export", str(cfg.run_dir), str(target)]) == 2
    assert capsys.readouterr().err == (f"fedlib: error: {target}: is a file; export writes a folder, so "
                                       "give a path that does not exist\n")
    assert cli.main(["export", str(cfg.run_dir), str(target / "inside")]) == 2
    err = capsys.readouterr().err
    assert err == f"fedlib: error: {target / 'inside'}: cannot be created, {target} is a file\n"
    assert target.read_text() == "mine"


def test_export_needs_no_data_folder(run, tmp_path, capsys):
    """The label names travel in the run folder: the data set may be gone when a model is exported."""
    import shutil

    from tests.conftest import ROOT

    copy = tmp_path / "mydata"
    shutil.copytree(ROOT / "data" / "scicite" / "tiny", copy)
    cfg, res = run(**{"data.name": str(copy), "federation.rounds": 1, "federation.export": False})
    assert json.loads((cfg.run_dir / "labels.json").read_text()) == LABELS
    shutil.rmtree(copy)
    out = tmp_path / "exported"
    capsys.readouterr()
    code = cli.main(["export", str(cfg.run_dir), str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    m = AutoModelForSequenceClassification.from_pretrained(out)
    assert m.config.id2label == {0: "background", 1: "method", 2: "result"}
    assert m.config.label2id == {"background": 0, "method": 1, "result": 2}
    torch.testing.assert_close(FlatParams(_reference(cfg, res)).get(), FlatParams(m).get())
    (cfg.run_dir / "labels.json").unlink()  # a run folder from before fedlib kept the names
    capsys.readouterr()
    assert cli.main(["export", str(cfg.run_dir), str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedlib: error: {cfg.run_dir}: has no labels.json (a run from an older fedlib) "
                          f"and its data set cannot give the label names: data.name='{copy}'"), err
    assert len(err.splitlines()) == 1
