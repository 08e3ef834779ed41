"""fedlib.lab.system: LoRA vs full fine-tuning at equal wall time, ratios over seeds."""

import pandas as pd
import pytest

from fedlib.lab import system


def _run(tmp_path, name, round_s, acc):
    d = tmp_path / name
    d.mkdir()
    pd.DataFrame({"round": range(1, len(acc) + 1), "round_s": round_s, "accuracy": acc}).to_csv(
        d / "rounds.csv", index=False)


def test_accuracy_at_the_wall_time_full_fine_tuning_took(tmp_path):
    # full: 2 rounds of 10 s (budget 20 s); LoRA: 4 rounds of 6 s -> 6, 12, 18 within, 24 past it
    _run(tmp_path, "full", [10, 10], [0.6, 0.8])
    _run(tmp_path, "lora", [6, 6, 6, 6], [0.55, 0.65, 0.7, 0.75])
    acc = pd.DataFrame({"name": ["full", "lora"], "strategy": ["full fine-tuning fp32", "LoRA r8"],
                        "seed": [0, 0]})
    curves, at = system.wall_time(acc, tmp_path)
    assert curves[curves["strategy"] == "LoRA r8"]["wall_s"].tolist() == [6, 12, 18, 24]
    at = at.set_index("strategy")
    assert at.loc["LoRA r8", "accuracy_at_budget"] == 0.7 and at.loc["LoRA r8", "rounds_at_budget"] == 3
    assert at.loc["LoRA r8", "accuracy_final"] == 0.75
    assert at.loc["full fine-tuning fp32", "accuracy_at_budget"] == 0.8


def test_lora_gets_its_learning_rate_and_rounds():
    (lora,) = system.accuracy_grid(["LoRA r8"], rounds=3)
    assert lora["client.lr"] == system.LORA_LR and lora["federation.rounds"] == 3 * system.LORA_ROUNDS
    assert len(system.accuracy_grid(None)) == 4


def test_ratios_use_the_mean_of_the_reference_over_seeds():
    df = pd.DataFrame({"strategy": ["collective (baseline)"] * 2 + ["p2p star"], "model": "m", "clients": 4,
                       "comm_s": [1.0, 3.0, 4.0], "comm_wait_s": [1.0, 3.0, 4.0],
                       "bytes_per_round": [1.0, 1.0, 2.0], "round_s": [2.0, 2.0, 4.0]})
    out = system.with_ratios(df)
    assert out["comm_wait_vs_collective"].tolist() == pytest.approx([0.5, 1.5, 2.0])
