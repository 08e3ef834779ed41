"""fedlib.bench.asyncwall's arithmetic, by hand: the event simulation of a FedBuff server on the
wall clock, synchronous rounds' emulated straggler time, measured idle fractions, the
projection to 96 ranks. (The benchmark's own runs are `python -m fedlib bench async`.)"""

import pandas as pd
import pytest

from fedlib import config
from fedlib.bench import BENCHES, asyncwall
from fedlib.lab import scaling


def test_workers_finishing_together_go_stale_in_turn():
    """4 workers, 2 s tasks, an instant server: the first wave arrives at t = 2 from version 0,
    the second at t = 4 from the versions current when each worker restarted."""
    out, taus = asyncwall.simulate_wall(lambda n, w: 2.0, workers=4, server_s=0.0, k=1, updates=8)
    assert taus == [0, 1, 2, 3, 3, 3, 3, 3]
    assert out["updates_per_s"] == 2.0 and out["idle_server"] == 1.0 and out["idle_workers"] == 0.0
    # K = 2: a version every second update; w0 restarts from version 0, w1 and w2 from 1, w3 from 2
    _, taus = asyncwall.simulate_wall(lambda n, w: 2.0, workers=4, server_s=0.0, k=2, updates=8)
    assert taus == [0, 0, 1, 1, 2, 1, 2, 1]


def test_a_busy_server_makes_its_workers_wait():
    """2 workers, 0.5 s tasks, 1 s per update at the server: updates at 0.5, 1.5, 2.5, 3.5 taken,
    the server done at 4.5; it idled the first 0.5 s; the workers waited 1 + 0.5 + 0.5 s."""
    out, taus = asyncwall.simulate_wall(lambda n, w: 0.5, workers=2, server_s=1.0, k=1, updates=4)
    assert out["total_s"] == 4.5 and out["updates_per_s"] == pytest.approx(4 / 4.5)
    assert out["idle_server"] == pytest.approx(0.5 / 4.5)
    assert out["idle_workers"] == pytest.approx(2.0 / (2 * 4.5))
    assert taus == [0, 1, 1, 1]


def test_sync_rounds_emulated_as_if_stragglers_slept():
    rounds = pd.DataFrame({"round": [1, 2], "aggregated": [2, 2], "pack_s": [0.0, 0.0],
                           "comm_s": [0.1, 0.1], "aggregate_s": [0.1, 0.1]})
    clients = pd.DataFrame({"round": [1, 1, 2, 2], "rank": [0, 1, 0, 1], "sim_s": [1.0, 3.0, 2.0, 1.0]})
    out, ranks = asyncwall.sync_emulated(rounds, clients)
    # rounds last 3.0 + 0.2 and 2.0 + 0.2 = 5.4 s; rank 0 idles 2.2 + 0.2, rank 1 0.2 + 1.2
    assert out["total_s"] == pytest.approx(5.4) and out["updates_per_s"] == pytest.approx(4 / 5.4)
    assert ranks["idle_fraction"].tolist() == pytest.approx([2.4 / 5.4, 1.4 / 5.4])
    assert out["idle_server"] == pytest.approx(2.4 / 5.4) and out["idle_workers"] == pytest.approx(1.4 / 5.4)


def test_wall_run_idle_fractions_from_its_files(tmp_path):
    pd.DataFrame({"round": [1, 2], "ranks": [3, 3], "virtual_s": [1.0, 4.0], "wait_s": [0.5, 1.5]}).to_csv(
        tmp_path / "rounds.csv", index=False)
    pd.DataFrame({"round": [1, 1, 2, 2], "rank": [1, 2, 1, 2], "idle_s": [0.2, 0.0, 0.6, 1.0],
                  "staleness": [0, 0, 1, 0]}).to_csv(tmp_path / "arrivals.csv", index=False)
    out, ranks, taus = asyncwall.wall_measured(tmp_path)
    assert ranks["idle_fraction"].tolist() == pytest.approx([0.5, 0.2, 0.25])  # 2/4, 0.8/4, 1/4
    assert out["updates_per_s"] == 1.0 and out["idle_workers"] == pytest.approx(0.225)
    assert out["staleness_mean"] == 0.25 and out["staleness_max"] == 1 and list(taus) == [0, 0, 1, 0]


def test_projection_to_96_ranks_with_equal_speeds():
    """Speed 1 everywhere, a free network: a sync round is 1 s of training + 0.5 s of server
    work (64 updates/s; every rank idles a third); FedBuff's 95 workers' first wave arrives
    together, a version every K = 10 updates, and the server (0.01 s per update) sets the pace."""
    cfg = config.load(None, {"federation.num_clients": 96})
    net = scaling.Network(bandwidth=1e30, latency=0.0)
    arms, taus = asyncwall.project(cfg, step_s=0.25, steps=4, round_s=0.5, update_s=0.01, payload=1e6,
                                   rounds=4, net=net)
    sync, wall = arms["sync fedavg"], arms["fedbuff wall"]
    assert sync["updates_per_s"] == pytest.approx(64.0)
    assert sync["idle_server"] == pytest.approx(1 / 3) and sync["idle_workers"] == pytest.approx(1 / 3)
    assert taus[:95] == [i // 10 for i in range(95)]
    assert wall["updates_per_s"] <= 1 / 0.01 and wall["staleness_max"] == max(taus)


def test_async_benchmark_is_wired(tmp_path):
    assert BENCHES["async"] == "fedlib.bench.asyncwall"
    over = asyncwall.arms(tmp_path, quick=True)
    sync, wall = (config.load(None, over[a]) for a in ("sync fedavg", "fedbuff wall"))
    modes = (sync.federation.mode, wall.federation.clock, wall.participation.emulate_speed)
    assert modes == ("sync", "wall", True)
    assert sync.participation == config.replace(wall, **{"participation.emulate_speed": False}).participation
