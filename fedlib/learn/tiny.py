"""Tiny random checkpoint folders laid out as the study's models ship them: config.json, weights
and the raw vocabulary file only (`vocab.txt` for BERT's WordPiece, `spiece.model` for ALBERT,
`spm.model` for DeBERTa-v3), so loading them goes through transformers' tokenizer conversion.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCICITE = ROOT / "data" / "scicite" / "tiny" / "train.jsonl"
SIZES = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=64)


def scicite_lines(n: int = 400) -> list[str]:
    with open(SCICITE, encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f, strict=False)]


def sentencepiece_model(folder: Path, vocab_size: int = 600) -> Path:
    """A unigram SentencePiece model trained on scicite sentences, with ALBERT's special pieces."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(scicite_lines()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "sp"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>",
        bos_piece="[CLS]", eos_piece="[SEP]", user_defined_symbols=["[MASK]"], minloglevel=2)
    return folder / "sp.model"


def wordpiece_vocab(folder: Path, vocab_size: int = 800) -> Path:
    """A BERT-style uncased WordPiece `vocab.txt` trained on scicite sentences."""
    from tokenizers import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(scicite_lines(), vocab_size=vocab_size, min_frequency=1)
    return Path(tok.save_model(str(folder))[0])


def checkpoint(folder: Path, family: str, vocab_file: Path) -> Path:
    """A random-init backbone of `family` ("bert" | "albert" | "deberta-v2") saved with only its
    raw vocabulary file next to it, as a user's downloaded checkpoint would be."""
    import shutil

    import torch
    from transformers import AlbertConfig, AutoModel, AutoTokenizer, BertConfig, DebertaV2Config

    folder.mkdir(parents=True, exist_ok=True)
    name = {"bert": "vocab.txt", "albert": "spiece.model", "deberta-v2": "spm.model"}[family]
    shutil.copy(vocab_file, folder / name)
    if family == "bert":
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    deberta_v3: dict[str, object] = {
        "relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
        "type_vocab_size": 0, "position_biased_input": False, "norm_rel_ebd": "layer_norm",
        "share_att_key": True}
    cls = {"bert": BertConfig, "albert": AlbertConfig, "deberta-v2": DebertaV2Config}[family]
    extras: dict[str, dict[str, object]] = {"bert": {}, "albert": {"embedding_size": 16},
                                            "deberta-v2": deberta_v3}
    extra = extras[family]
    cls(vocab_size=8, **SIZES, **extra).save_pretrained(folder)  # model_type for AutoTokenizer
    vocab = len(AutoTokenizer.from_pretrained(folder))
    torch.manual_seed(0)
    AutoModel.from_config(cls(vocab_size=vocab, **SIZES, **extra)).save_pretrained(folder)
    return folder
