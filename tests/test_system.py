"""System-aware strategies: only trainable tensors travel (LoRA / freezing), 16-bit payloads
with error feedback, balanced placement; each equivalent across rank counts."""

import itertools

import numpy as np
import pytest
import torch

from fedlib import config, runner
from fedlib.residuals import ResidualStore
from fedlib.wire import placement
from fedlib.wire.codec import Codec, set_tail, unpack, update_view
from tests.conftest import run_on_ranks


@pytest.mark.parametrize("extra", [{"model.lora_r": 4}, {"model.freeze": "lower_half"}],
                         ids=["lora", "freeze"])
def test_only_trainable_tensors_packed_and_round_trip(tiny_cfg, extra):
    full = runner.Context.build(tiny_cfg(), runner.make_comm("local"))
    ctx = runner.Context.build(tiny_cfg(**extra), runner.make_comm("local"))
    assert 0 < ctx.flat.numel < full.flat.numel
    assert ctx.flat.numel == sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
    vec = torch.randn(ctx.flat.numel, generator=torch.Generator().manual_seed(0))
    frozen = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if not p.requires_grad}
    ctx.flat.set(vec)
    assert torch.equal(ctx.flat.get(), vec)
    assert all(torch.equal(p, frozen[n]) for n, p in ctx.model.named_parameters() if not p.requires_grad)


def test_lora_payload_fraction_on_bert_base(tiny_cfg):
    ctx = runner.Context.build(tiny_cfg(**{"model.overrides": {}, "model.lora_r": 8}),
                               runner.make_comm("local"))
    total = sum(p.numel() for p in ctx.model.parameters())
    assert total > 100e6 and ctx.flat.numel / total < 0.01


@pytest.mark.parametrize("dtype,bits,floor", [("bf16", 8, 0.0), ("fp16", 11, 2.0**-25)])
def test_16bit_payload_error_bound_and_wire_round_trip(dtype, bits, floor):
    """Relative error <= 2^-bits (round to nearest); fp16 also has an absolute floor: updates
    below 6e-5 are subnormal there (one reason to prefer bf16)."""
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1)) * 1e-3
    q = Codec(dtype).encode(0, x.clone())
    into = torch.empty(x.numel(), dtype=q.dtype)
    assert Codec(dtype).encode(0, x.clone(), out=into) is into and torch.equal(into, q)
    assert q.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert ((q.float() - x).abs() <= x.abs() * 2.0**-bits + floor + 1e-12).all()
    wire = np.zeros(x.numel() + 4, dtype=np.int16)
    update_view(wire, q.dtype).copy_(q)
    set_tail(wire, 37.0, 1.0)
    back, w, c = unpack(wire, q.dtype)
    assert torch.equal(back, q) and (w, c) == (37.0, 1.0)


def test_error_feedback_keeps_the_running_sum_unbiased(tmp_path):
    gen = torch.Generator().manual_seed(2)
    store = ResidualStore(tmp_path)
    codec = Codec("bf16", store)
    true = torch.zeros(5000, dtype=torch.float64)
    sent = torch.zeros(5000, dtype=torch.float64)
    plain = torch.zeros(5000, dtype=torch.float64)
    for rnd in range(1, 51):
        d = torch.randn(5000, generator=gen) * 1e-3 + 3e-4
        true += d.double()
        plain += d.to(torch.bfloat16).double()
        sent += codec.encode(7, d, rnd=rnd).double()  # d is scratch: it becomes the residual
    final = store.get(7, 5000, 51).double()
    torch.testing.assert_close(sent + final, true, rtol=0, atol=1e-7)
    assert (sent - true).abs().mean() < (plain - true).abs().mean() / 2  # without EF errors pile up


def test_balanced_placement_within_4_3_of_optimal():
    work = [7, 5, 4, 4, 3, 3, 2, 2, 1]
    clients = list(range(len(work)))
    cost = dict(zip(clients, work, strict=True))
    best = min(max(sum(w for w, a in zip(work, assign, strict=True) if a == r) for r in range(3))
               for assign in itertools.product(range(3), repeat=len(work)))
    plan = placement.balanced(clients, work, 3)
    assert plan == placement.balanced(clients, work, 3)  # deterministic
    assert sorted(c for p in plan for c in p) == clients
    assert placement.makespan(plan, cost) <= 4 / 3 * best
    assert placement.makespan(plan, cost) < placement.makespan(placement.round_robin(clients, 3), cost)


def test_cost_model_recovers_per_client_cost_and_changes_the_plan():
    costs = placement.CostModel()
    assert costs.per_client_steps() == 0.0
    for steps, n in ((10, 2), (4, 6), (7, 3), (12, 5)):  # busy = 0.5 s/step + 1.5 s/client
        costs.observe(steps, n, 0.5 * steps + 1.5 * n)
    assert costs.per_client_steps() == pytest.approx(3.0)
    clients, steps = list(range(6)), [9, 1, 1, 1, 1, 1]  # one long client, five short ones
    by_steps = placement.balanced(clients, steps, 2)
    by_cost = placement.balanced(clients, [s + 3.0 for s in steps], 2)
    assert by_steps == [[0], [1, 2, 3, 4, 5]] and by_cost == [[0, 4], [1, 2, 3, 5]]
    true = {c: 0.5 * s + 1.5 for c, s in zip(clients, steps, strict=True)}
    assert placement.makespan(by_steps, true) == 10.0 and placement.makespan(by_cost, true) == 8.0


def _mpi_run(tmp_path, n, name, **extra):
    run_dir = run_on_ranks(n, tmp_path, name, threads=1, **extra)
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]


@pytest.mark.mpi
@pytest.mark.parametrize("extra", [
    {"model.lora_r": 4},
    {"federation.payload_dtype": "bf16", "federation.error_feedback": True, "federation.aggregation": "p2p",
     "federation.clients_per_round": 4},
    {"federation.placement": "balanced", "partition.kind": "quantity", "partition.sigma": 1.0},
    {"federation.aggregation": "p2p", "federation.overlap": True, "participation.dropout": 0.4,
     "participation.dropout_when": "mid"},
    {"federation.aggregation": "p2p", "federation.overlap": True, "federation.payload_dtype": "bf16",
     "federation.clients_per_round": 5, "federation.placement": "balanced", "partition.kind": "quantity"},
], ids=["lora", "bf16-ef-p2p", "balanced", "p2p-overlap-dropout", "p2p-overlap-bf16-uneven"])
def test_strategy_same_on_one_and_two_ranks(tmp_path, tiny_cfg, extra):
    one = runner.run(tiny_cfg(name="one", **extra), progress=False)
    two = _mpi_run(tmp_path, 2, "two", **extra)
    torch.testing.assert_close(two, one.state.weights, rtol=0, atol=1e-5)


def test_scaling_fit_recovers_a_known_model_and_projects():
    import pandas as pd

    from fedlib.lab import scaling

    rows = [{"aggregation": m, "payload_bytes": b, "clients": n, "ranks": p}
            for m in ("collective", "p2p") for b in (1e6, 4e8) for n in (4, 32, 96) for p in (2, 4)]
    df = pd.DataFrame(rows)
    truth = {"collective": (0.05, 1e-9), "p2p": (0.2, 3e-10)}
    cols = zip(df.aggregation, df.payload_bytes, df.clients, df.ranks, strict=True)
    df["comm_wait_s"] = [truth[m][0] + truth[m][1] * scaling.volume(m, b, n, p) for m, b, n, p in cols]
    fit = scaling.fit(df).set_index("aggregation")
    for m, (a, b) in truth.items():
        assert fit.loc[m, "a"] == pytest.approx(a, rel=1e-6) and fit.loc[m, "b"] == pytest.approx(b, rel=1e-6)
        assert fit.loc[m, "r2"] == pytest.approx(1.0)
    np.testing.assert_allclose(scaling.predict(fit.reset_index(), df), df["comm_wait_s"], rtol=1e-6)
    # ring allreduce: 2(p-1)/p * B; star: (n(p-1)/p + p-1) * B
    assert scaling.volume("collective", 100, 96, 4) == 150
    assert scaling.volume("p2p", 100, 96, 4) == (72 + 3) * 100
    net = scaling.Network(bandwidth=1e9, latency=0.0)
    coll = [scaling.project(4e8, n, n, "collective", net) for n in (8, 96, 1024)]
    star = [scaling.project(4e8, n, n, "p2p", net) for n in (8, 96, 1024)]
    assert coll[-1] < 2 * 0.4 + 1e-9 and star[1] == pytest.approx((96 * 95 / 96 + 95) * 0.4)
    assert star[-1] / star[0] > 100 and coll[-1] / coll[0] < 1.2


def test_overlap_pipeline_keeps_order_waits_for_buffers_and_reraises():
    import time

    from fedlib.wire.overlap import Pipeline, Ring
    from fedlib.wire.timer import Timer

    done: list[int] = []

    def job(k: int, delay: float, t: Timer) -> None:
        time.sleep(delay)
        done.append(k)

    timer, pipe, ring = Timer(), Pipeline(True), Ring(["a", "b"])
    for k in range(4):
        i, _ = ring.take(timer)  # buffer k % 2: its last job (k-2) and all before it are done
        assert done[: k - 1] == list(range(k - 1))
        ring.hold(i, pipe.run(lambda t, k=k: job(k, 0.05 * (4 - k), t), timer))
    pipe.drain(timer)
    assert done == [0, 1, 2, 3] and timer.s["comm"] > 0.05

    def boom(t: Timer) -> None:
        raise ValueError("lost message")

    pipe.run(boom, timer)
    with pytest.raises(ValueError, match="lost message"):
        pipe.drain(timer)
    pipe.close()
    inline = Pipeline(False)
    assert inline.run(lambda t: done.append(9), timer) is None and done[-1] == 9


def test_overlap_needs_the_p2p_star(tiny_cfg):
    with pytest.raises(config.ConfigError, match="federation.overlap"):
        tiny_cfg(**{"federation.overlap": True})
