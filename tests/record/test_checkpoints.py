"""The study's model families loaded from checkpoint folders with their own tokenizers (WordPiece
`vocab.txt`, SentencePiece `spiece.model` / `spm.model`) and fine-tuned for a federated round."""

import subprocess
import sys

import pytest

from fedlib import config, runner
from fedlib.learn import models
from fedlib.learn import tiny as tc


@pytest.fixture(scope="session")
def vocab_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return {"spm": tc.sentencepiece_model(root / "spm"), "wordpiece": tc.wordpiece_vocab(root / "wp")}


@pytest.mark.parametrize(("family", "vocab", "tokenizer"), [
    ("bert", "wordpiece", "BertTokenizer"),
    ("albert", "spm", "AlbertTokenizer"),
    ("deberta-v2", "spm", "DebertaV2Tokenizer"),
])
def test_checkpoint_folder_fine_tunes_one_round(family, vocab, tokenizer, vocab_files, tiny_cfg, tmp_path,
                                               monkeypatch):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    ckpt = tc.checkpoint(tmp_path / family, family, vocab_files[vocab])
    tok = models.load_tokenizer(config.ModelConfig(name=str(ckpt)))
    assert type(tok).__name__ == tokenizer
    ids = tok("Citation intent in scientific text")["input_ids"]
    assert tok.unk_token_id not in ids[1:-1]  # the trained vocabulary, not a fallback
    cfg = tiny_cfg(name=family, **{"model.name": str(ckpt), "model.overrides": {},
                                   "federation.num_clients": 2, "federation.rounds": 1,
                                   "client.local_steps": 2, "data.max_eval_samples": 16})
    res = runner.run(cfg, progress=False)
    assert res.state.round == 1 and res.rounds["train_loss"].notna().all()
    assert res.summary["accuracy"] is not None


def test_missing_sentencepiece_names_the_packages(vocab_files, tmp_path):
    ckpt = tc.checkpoint(tmp_path / "deberta", "deberta-v2", vocab_files["spm"])
    code = ("import sys; sys.modules['sentencepiece'] = None\n"
            "from fedlib import config\nfrom fedlib.learn import models\n"
            f"models.load_tokenizer(config.ModelConfig(name={str(ckpt)!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tc.ROOT)
    assert proc.returncode != 0
    assert "sentencepiece is not installed" in proc.stderr
    assert "pip install sentencepiece protobuf" in proc.stderr
