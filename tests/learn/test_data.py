import json
import re
from pathlib import Path

import pytest
import torch

from fedlib import config
from fedlib.hpc import store
from fedlib.learn import data, models


def _folder(tmp_path: Path, lines: list[str], labels=("a", "b")) -> Path:
    d = tmp_path / "set"
    d.mkdir()
    (d / "labels.json").write_text(json.dumps(list(labels)))
    for split in ("train", "test"):
        (d / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return d


@pytest.mark.parametrize(("line", "msg"), [
    ('{"text": "x", "label": 0', "train.jsonl:2: not valid JSON"),
    ('{"text": "", "label": 0}', "train.jsonl:2: 'text' must be a non-empty string"),
    ('{"text": "x", "label": 5}', "train.jsonl:2: 'label' must be an integer in [0, 2)"),
    ('{"text": "x", "label": "a"}', "train.jsonl:2: 'label' must be an integer"),
    ('["x", 0]', 'train.jsonl:2: expected an object with "text" and "label"'),
])
def test_malformed_line_names_file_and_line(tmp_path, line, msg):
    d = _folder(tmp_path, ['{"text": "ok", "label": 1}', line])
    with pytest.raises(data.DataError, match=re.escape(msg)):
        data.load_texts(config.DataConfig(name=str(d), subset="full"))


def test_vendored_scicite_tiny_and_full():
    tiny = data.resolve("scicite", "tiny")
    full = data.resolve("scicite", "full")
    assert tiny is not None and tiny.name == "tiny" and (full / "train.jsonl").is_file()
    raw, names = data.load_texts(config.DataConfig(name="scicite", subset="tiny"))
    assert names == ["background", "method", "result"]
    assert len(raw["train"][0]) == 2000 and len(raw["test"][0]) == 500


def test_unknown_dataset_error_names_the_key():
    with pytest.raises(data.DataError, match="data.name='no-such-set'"):
        data.load_texts(config.DataConfig(name="no-such-set"))


def test_tokenize_batches_cut_to_longest(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    tok = models.load_tokenizer(config.ModelConfig(name="minilm"))
    d = _folder(tmp_path, ['{"text": "short", "label": 0}',
                           '{"text": "a much longer sentence about citations", "label": 1}'])
    td = data.load(config.DataConfig(name=str(d), subset="full", max_length=32), tok)
    b = td.train.batch(torch.tensor([0]))
    assert b["input_ids"].shape == (1, 3)  # [CLS] short [SEP]
    assert td.train.batch(torch.tensor([0, 1]))["attention_mask"].sum().item() == int(td.train.lengths.sum())
    again = data.load(config.DataConfig(name=str(d), subset="full", max_length=32), tok)  # cached
    assert torch.equal(again.train.input_ids, td.train.input_ids)
    folded = data.tokenize(["a much longer sentence"], [0], tok, 16, vocab_size=100)
    assert int(folded.input_ids.max()) < 100


def test_hf_saved_dataset(tmp_path):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    split = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]},
                                       features=feats)
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "hf"))
    raw, names = data.load_texts(config.DataConfig(name=str(tmp_path / "hf")))
    assert names == ["neg", "pos"] and raw["train"] == (["good", "bad", "fine"], [1, 0, 1])


def _saved(tmp_path: Path, columns: dict[str, list]) -> Path:
    import datasets

    split = datasets.Dataset.from_dict(columns)
    datasets.DatasetDict({"train": split, "validation": split.select([2, 0])}).save_to_disk(
        str(tmp_path / "hf"))
    return tmp_path / "hf"


def test_hf_columns_by_name_with_string_labels(tmp_path):
    path = _saved(tmp_path, {"sentence": ["good", "bad", "fine"], "category": ["pos", "neg", "pos"],
                             "idx": [0, 1, 2]})
    cfg = config.DataConfig(name=str(path), eval_split="dev", text_column="sentence",
                            label_column="category")
    raw, names = data.load_texts(cfg)
    assert names == ["neg", "pos"]
    assert raw["train"] == (["good", "bad", "fine"], [1, 0, 1]) and raw["dev"] == (["fine", "good"], [1, 1])


def test_hf_integer_labels_not_starting_at_zero_map_to_ids(tmp_path):
    path = _saved(tmp_path, {"text": ["a", "b", "c"], "stars": [5, 1, 5]})
    raw, names = data.load_texts(config.DataConfig(name=str(path), eval_split="dev", label_column="stars"))
    assert names == ["1", "5"] and raw["train"][1] == [1, 0, 1]


@pytest.mark.parametrize(("key", "value"), [("text_column", "text"), ("label_column", "label")])
def test_hf_missing_column_names_the_key_and_the_columns(tmp_path, key, value):
    path = _saved(tmp_path, {"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]})
    cfg = config.DataConfig(name=str(path), eval_split="dev",
                            **{"text_column": "sentence", "label_column": "label", key: "nope"})
    with pytest.raises(config.ConfigError, match=re.escape(
            f"data.{key}='nope': {path} split 'train' has no such column; its columns are "
            "['sentence', 'label']")):
        data.load_texts(cfg)


def test_hf_config_on_a_saved_dataset_is_an_error(tmp_path):
    path = _saved(tmp_path, {"text": ["a", "b", "c"], "label": [0, 1, 0]})
    with pytest.raises(config.ConfigError, match="data.config='sst2'"):
        data.load_texts(config.DataConfig(name=str(path), config="sst2", eval_split="dev"))


def test_jsonl_columns_by_name(tmp_path):
    d = _folder(tmp_path, ['{"sentence": "ok", "y": 1}', '{"sentence": "no", "y": 0}'])
    raw, _ = data.load_texts(config.DataConfig(name=str(d), subset="full", text_column="sentence",
                                               label_column="y"))
    assert raw["train"] == (["ok", "no"], [1, 0])
    with pytest.raises(data.DataError, match='expected an object with "text" and "label"'):
        data.load_texts(config.DataConfig(name=str(d), subset="full"))


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("FEDLIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "fedlib"
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "scratch"))
    assert data.cache_dir() == tmp_path / "scratch"


def test_tmp_names_unique_per_host_and_pid(tmp_path, monkeypatch):
    import os
    import socket

    name = store.tmp_name(tmp_path / "tok-x.pt").name
    assert name.startswith("tok-x.pt.") and socket.gethostname() in name and str(os.getpid()) in name
    monkeypatch.setattr(socket, "gethostname", lambda: "other-node")
    assert store.tmp_name(tmp_path / "tok-x.pt").name != name  # same pid on another node


class _Ranks:
    """Two ranks of one node seen from one of them; counts barriers."""

    def __init__(self, rank: int) -> None:
        self.rank, self.size, self.barriers = rank, 2, 0

    def barrier(self, idle: bool = False) -> None:
        self.barriers += 1

    def bcast_obj(self, obj, root: int = 0):
        return "token"


@pytest.mark.parametrize("local_rank", [0, 1])
def test_first_rank_of_a_node_writes_the_cache_others_wait(tmp_path, monkeypatch, local_rank):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", str(local_rank))
    tok = models.load_tokenizer(config.ModelConfig(name="minilm"))
    d = _folder(tmp_path, ['{"text": "short", "label": 0}', '{"text": "longer one", "label": 1}'])
    comm = _Ranks(local_rank)
    td = data.load(config.DataConfig(name=str(d), subset="full", max_length=32), tok, comm=comm)
    assert comm.barriers == 4  # train and eval: rank 0 writes, then the nodes that cannot see it
    written = sorted(p.name for p in (tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else []
    assert len(written) == (1 if local_rank == 0 else 0)  # same texts for both splits: one file
    assert not any(n.endswith(".tmp") for n in written)
    assert len(td.train) == 2


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    """A cache folder that cannot be created (read-only $HOME on compute nodes): warn, go on."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "file" / "fedlib"))
    tok = models.load_tokenizer(config.ModelConfig(name="minilm"))
    d = _folder(tmp_path, ['{"text": "short", "label": 0}'])
    with pytest.warns(UserWarning, match="not writable"):
        td = data.load(config.DataConfig(name=str(d), subset="full", max_length=32), tok)
    assert len(td.train) == 1
