"""16-bit payloads (fedlib.wire.codec): the rounding error bound, the message layout, and error
feedback keeping the running sum unbiased."""

import numpy as np
import pytest
import torch

from fedlib.record.residuals import ResidualStore
from fedlib.wire.codec import Codec, set_tail, unpack, update_view


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
