import subprocess
import sys

from tests.conftest import ROOT


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedlib", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_bad_override_exits_2_naming_the_key():
    p = _cli("run", "params/quickstart.yaml", "--set", "client.lr=0")
    assert p.returncode == 2
    assert "config error: client.lr: must be > 0" in p.stderr


def test_bad_yaml_key_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfederation:\n  num_client: 3\n")
    p = _cli("run", str(bad))
    assert p.returncode == 2
    assert f"{bad}:3: federation.num_client: unknown key (did you mean 'num_clients'?)" in p.stderr


def test_config_keys_lists_every_section():
    out = _cli("config-keys").stdout
    for key in ("federation.aggregation", "client.mu", "strategy.algorithm", "data.name"):
        assert f"`{key}`" in out
