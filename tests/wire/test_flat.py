"""FlatParams bound to one buffer: the same values and updates as tensor by tensor, in O(1) ops."""

import pytest
import torch
from torch import nn

from fedlib import runner
from fedlib.wire import flat
from fedlib.wire.flat import FlatParams, finite


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    m[0].bias.requires_grad_(False)  # a frozen tensor in the middle stays out
    return m


def test_bound_params_are_views_of_one_buffer_and_train_in_place():
    m = _model()
    before = FlatParams(m).get()
    flat = FlatParams(m, bind=True)
    assert flat.buf is not None and flat.tensors == [flat.buf]
    assert torch.equal(flat.get(), before)  # binding keeps the values
    assert all(p.untyped_storage().data_ptr() == flat.buf.untyped_storage().data_ptr() for p in flat.params)
    assert not m[0].bias.requires_grad and m[0].bias.numel() == 7  # frozen: untouched
    opt = torch.optim.SGD(flat.params, lr=0.1)
    m(torch.randn(4, 5)).sum().backward()
    opt.step()
    assert not torch.equal(flat.buf, before)  # the optimizer's in-place step lands in the buffer
    assert torch.equal(flat.buf, FlatParams(m).get())
    w = torch.randn(flat.numel)
    flat.set(w)
    assert torch.equal(m[2].weight.detach().reshape(-1), w[7 * 5 : 7 * 5 + 21])


def test_bound_and_unbound_updates_are_bit_identical():
    a, b = _model(), _model()
    fa, fb = FlatParams(a), FlatParams(b, bind=True)
    base = torch.randn(fa.numel)
    trained = base + torch.randn(fa.numel) * 1e-3
    fa.set(trained)
    fb.set(trained)
    acc0 = torch.randn(fa.numel)
    for weight in (1.0, 37.3, 1e-3):
        acc_a, acc_b = acc0.clone(), acc0.clone()
        fa.add_delta_to(acc_a, base, weight)
        fb.add_delta_to(acc_b, base, weight)
        assert torch.equal(acc_a, acc_b)
    assert torch.equal(fa.delta_into(torch.empty(fa.numel), base), fb.delta_into(torch.empty(fb.numel), base))
    assert torch.equal(fa.get(), fb.get())


def test_mixed_dtypes_keep_the_tensor_by_tensor_path():
    m = _model()
    m[2].half()
    flat = FlatParams(m, bind=True)
    assert flat.buf is None and flat.tensors == flat.params


def test_the_round_model_is_bound(tiny_cfg):
    ctx = runner.Context.build(tiny_cfg(), runner.make_comm("local"))
    assert ctx.flat.buf is not None and ctx.flat.buf.numel() == ctx.flat.numel


def test_aggregate_counts_in_one_op_with_the_same_float32_sums():
    from fedlib.wire.aggregate import Aggregate

    agg, ref = Aggregate.zeros(5), torch.zeros(7)
    for w in (3.0, 0.1, 1e7, 1 / 3, 12.0):
        agg.count_(w)
        ref[-2] += w  # the tensor-indexed adds it replaces
        ref[-1] += 1.0
    assert torch.equal(agg.buf, ref) and agg.count == 5


def test_collective_sum_settles_the_shared_base_with_per_client_precision():
    """Σ w_k·(x_k − g) folded as Σ w_k·x_k − (Σ w_k)·g, settled every few clients: equal to the
    float64 sum within a few times the error of subtracting g per client (a round-long running
    sum is ~500× worse here), with the weights and count exact."""
    from fedlib.wire.aggregate import Update
    from fedlib.wire.collective import Collective
    from fedlib.wire.comm import LocalComm
    from fedlib.wire.timer import Timer

    m = nn.Linear(100, 50)
    flat = FlatParams(m, bind=True)
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(flat.numel, generator=gen) * 0.05
    ex, per_client, timer = Collective(LocalComm(), flat.numel), torch.zeros(flat.numel), Timer()
    ex.begin([[0]])
    truth, weight = torch.zeros(flat.numel, dtype=torch.float64), 0.0
    for k in range(1000):
        delta = torch.randn(flat.numel, generator=gen) * 1e-4
        flat.set(g + delta)
        w = float(torch.randint(1, 400, (1,), generator=gen))
        if k % 7 == 3:  # a planned client whose update is not kept
            ex.submit(None, timer)
            continue
        ex.submit(Update(k, 1, flat, g, w), timer)
        flat.add_delta_to(per_client, g, w)
        truth += w * ((g + delta) - g).double()
        weight += w
    agg = ex.finish(timer)
    assert agg.weight == weight and agg.count == 1000 - len(range(3, 1000, 7))
    err = (agg.total.double() - truth).abs().max()
    ref = (per_client.double() - truth).abs().max()
    assert err <= 5 * ref, (err, ref)
    # and far below the fp32 rounding of one client's own weights
    assert err / weight < torch.finfo(torch.float32).eps * g.abs().max() / 10


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


def test_finite_takes_the_sum_shortcut_and_stays_exact(monkeypatch):
    big = torch.full((4,), 3e38)  # finite values whose float32 sum overflows
    assert finite([torch.ones(3), big])
    for bad in (float("inf"), float("-inf"), float("nan")):
        assert not finite([torch.ones(3), torch.tensor([1.0, bad])])
    isfinite = torch.isfinite
    calls = []
    monkeypatch.setattr(flat.torch, "isfinite", lambda t: calls.append(t) or isfinite(t))
    assert finite([torch.randn(1000), torch.randn(7)]) and calls == []  # one sum each
    assert finite([big]) and len(calls) == 1  # overflow: the exact check decides
