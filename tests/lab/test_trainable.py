"""fedlib.lab.trainable: what a claim's runs trained, in words, from the per-run table's
`trainable`, `params` and `model` columns (and the model's own config)."""

import pandas as pd
import pytest

from fedlib.lab import trainable


@pytest.mark.parametrize("part,params,layers,hidden,text", [
    ("head", 2695, 6, 384, "linear probe on frozen features (2,695 params)"),         # 7 x (384 + 1)
    # a dense pooler + the linear head: 391 x 385, as many "labels" as the width, so not a probe
    ("head", 2695 + 384 * 385, 6, 384, "classifier head on a frozen encoder (151k params)"),
    ("layers above 5", 1_778_695, 6, 384, "top-1 encoder layer + head (1.8M params)"),
    ("layers above half", 43_120_131, 12, 768, "top-6 encoder layers + head (43.1M params)"),
    ("layers above 3", 5_000, None, None, "encoder layers above 3 + head (5,000 params)"),
    ("all but embeddings", 21_000_000, 6, 384, "all 6 encoder layers + head (21.0M params)"),
    ("full", 109_484_547, 12, 768, "whole model (109M params)"),
    ("LoRA r8", 74_883, 6, 384, "LoRA r=8 adapters + head (74,883 params)"),
])
def test_describe(part, params, layers, hidden, text):
    assert trainable.describe(part, params, layers, hidden) == text


def test_shape_of_presets_and_minilm():
    assert trainable.shape("bert-base-uncased") == (12, 768) and trainable.shape("bert") == (12, 768)
    assert trainable.shape("minilm") == (6, 384)


def test_text_of_a_table_names_each_model_and_part_once():
    rows = pd.DataFrame({"model": ["minilm", "minilm", "bert-base-uncased"],
                         "trainable": ["head", "head", "full"], "params": [2695, 2695, 109_484_547]})
    want = "linear probe on frozen features (2,695 params) / whole model (109M params)"
    assert trainable.text(rows) == want
    assert trainable.text(rows.drop(columns="trainable")) == "?"
    own = rows.iloc[:1].assign(trainable="layers above 1", params=10_000, encoder_layers=2, hidden_size=8)
    assert trainable.text(own) == "top-1 encoder layer + head (10,000 params)"  # the table's own shape wins
