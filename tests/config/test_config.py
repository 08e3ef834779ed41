from pathlib import Path

import pytest
import yaml

from fedlib import config
from fedlib.config import ConfigError

BAD = [
    ({"federation.num_clients": 0}, "federation.num_clients: must be >= 1"),
    ({"federation.rounds": 0}, "federation.rounds: must be >= 1"),
    ({"federation.fraction": 0.0}, "federation.fraction: must be in (0, 1]"),
    ({"federation.fraction": 1.5}, "federation.fraction: must be in (0, 1]"),
    ({"federation.clients_per_round": 9, "federation.num_clients": 4},
     "federation.clients_per_round: must be in [1, num_clients=4]"),
    ({"federation.aggregation": "ring"}, "federation.aggregation: must be one of"),
    ({"federation.chunk_mb": 4096}, "federation.chunk_mb: must be in [1, 2047]"),
    ({"client.lr": 0}, "client.lr: must be > 0"),
    ({"client.lr": -1e-3}, "client.lr: must be > 0"),
    ({"client.lr": "fast"}, "client.lr: must be a number"),
    ({"client.batch_size": 0}, "client.batch_size: must be >= 1"),
    ({"client.batch_size": 2.5}, "client.batch_size: must be an integer"),
    ({"client.mu": -0.1}, "client.mu: must be >= 0"),
    ({"client.optimizer": "lbfgs"}, "client.optimizer: must be one of"),
    ({"client.local_steps": 0}, "client.local_steps: must be >= 1 or null"),
    ({"strategy.algorithm": "fedfoo"}, "strategy.algorithm: must be one of"),
    ({"strategy.beta1": 1.0}, "strategy.beta1: must be in [0, 1)"),
    ({"strategy.tau": 0}, "strategy.tau: must be > 0"),
    ({"strategy.server_lr": 0}, "strategy.server_lr: must be > 0"),
    ({"data.max_length": 4}, "data.max_length: must be >= 8"),
    ({"data.subset": "medium"}, "data.subset: must be one of"),
    ({"model.pretrained": "yes"}, "model.pretrained: must be true or false"),
    ({"federation.rounds": True}, "federation.rounds: must be an integer"),
    ({"federation.colective": 1}, "federation.colective: unknown key"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"client": 3}, "client: must be a mapping"),
    ({"name": ""}, "name: must be a non-empty folder name"),
]


@pytest.mark.parametrize(("over", "msg"), BAD, ids=[next(iter(o)) for o, _ in BAD])
def test_bad_values_name_the_key(over, msg):
    with pytest.raises(ConfigError) as e:
        config.load(None, over)
    assert msg in str(e.value)


def test_yaml_errors_carry_file_and_line(tmp_path: Path):
    p = tmp_path / "x.yaml"
    p.write_text("name: a\nclient:\n  lr: 0.1\n  batch_sise: 8\n")
    with pytest.raises(ConfigError, match=r"x.yaml:4: client.batch_sise: unknown key .*batch_size"):
        config.load(p)
    p.write_text("federation:\n  rounds: -2\n")
    with pytest.raises(ConfigError, match=r"x.yaml:2: federation.rounds: must be >= 1"):
        config.load(p)


def test_overrides_and_round_trip(tmp_path: Path):
    p = tmp_path / "x.yaml"
    p.write_text("name: a\nclient:\n  lr: 1.0e-4\n")
    cfg = config.load(p, config.parse_overrides(["federation.rounds=7", "strategy.algorithm=fedprox",
                                                  "client.mu=0.01"]))
    assert (cfg.name, cfg.client.lr, cfg.federation.rounds, cfg.client.mu) == ("a", 1e-4, 7, 0.01)
    again = config.from_dict(__import__("yaml").safe_load(config.dump(cfg)))
    assert again == cfg
    assert config.replace(cfg, **{"federation.rounds": 3}).federation.rounds == 3
    with pytest.raises(ConfigError, match="expected key=value"):
        config.parse_overrides(["rounds"])


def test_config_is_frozen():
    cfg = config.RunConfig()
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_every_params_file_loads(tmp_path):
    """Every YAML under params/ loads: a run config (params/*.yaml) with config.load; a
    notebook's parameters (params/<profile>/<notebook>.yaml) as its profile's, with the run
    config it names (config_file + overrides) loading too; a toy profile's overrides likewise;
    the interconnects (params/interconnects.yaml) with scaling.networks."""
    from fedlib.lab import reproduce, scaling

    params = Path(__file__).resolve().parents[2] / "params"
    files = sorted(params.rglob("*.yaml"))
    assert scaling.INTERCONNECTS in files and scaling.networks(scaling.INTERCONNECTS)
    files.remove(scaling.INTERCONNECTS)
    runs = [p for p in files if p.parent == params]
    notebooks = [p for p in files if p.parent != params and p.name != reproduce.TOY]
    toys = [p for p in files if p.name == reproduce.TOY]
    assert runs and notebooks and toys, "no params files found"
    assert len(runs) + len(notebooks) + len(toys) == len(files)
    for p in runs:
        config.load(p)
    for p in notebooks:
        values = reproduce.parameters(p.parent.name, p.stem, params)
        assert values.get("profile") == p.parent.name, p
        if "config_file" in values:
            config.load(params.parent / values["config_file"],
                        reproduce.expand(values.get("overrides") or {}, tmp_path))
    for p in toys:
        config.load(None, reproduce.expand((yaml.safe_load(p.read_text()) or {}).get("overrides", {}),
                                           tmp_path))


def test_describe_lists_every_key():
    keys = [k for k, *_ in config.describe()]
    assert "federation.aggregation" in keys and "client.mu" in keys and "seed" in keys


def test_readme_config_table_in_sync():
    from fedlib.config import docs

    readme = docs.README.read_text()
    assert f"<!-- config-keys:start -->\n{docs.table()}<!-- config-keys:end -->" in readme, (
        "README config table is stale: run `make docs`")


# ---- YAML a user's editor can produce: one line naming the file, the line and the key ----

def test_non_utf8_yaml_names_file_line_and_byte(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: x\n# caf\u00e9 au lait\nfederation:\n  rounds: 2\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        config.load(bad)
    assert str(e.value) == f"{bad}:2: not UTF-8 text (byte 13: b'\\xe9'); save the file as UTF-8"


def test_duplicate_yaml_key_names_the_key_and_both_lines(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: x\nfederation:\n  rounds: 2\n  num_clients: 3\n  rounds: 5\n")
    with pytest.raises(ConfigError) as e:
        config.load(dup)
    assert str(e.value) == f"{dup}:5: federation.rounds: duplicate key (also on line 3); keep one"
    top = tmp_path / "top.yaml"
    top.write_text("seed: 1\nname: x\nseed: 2\n")
    with pytest.raises(ConfigError) as e:
        config.load(top)
    assert str(e.value) == f"{top}:3: seed: duplicate key (also on line 1); keep one"


def test_duplicate_key_in_a_set_value_and_bad_yaml_are_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        config.parse_overrides(["model.overrides={hidden_size: 8, hidden_size: 16}"])
    assert str(e.value) == "--set model.overrides.hidden_size: duplicate key; keep one"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfederation: [1\n")
    with pytest.raises(ConfigError) as e:
        config.load(bad)
    assert str(e.value) == f"{bad}:3: not valid YAML: expected ',' or ']', but got '<stream end>'"
    nested = tmp_path / "ok.yaml"  # the same key under two sections is no duplicate
    nested.write_text("federation:\n  rounds: 2\nstrategy:\n  algorithm: fedavg\nclient:\n  lr: 0.001\n")
    assert config.load(nested).federation.rounds == 2
