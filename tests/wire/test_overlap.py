"""Messages overlapped with training (fedlib.wire.overlap, federation.overlap)."""

import pytest

from fedlib import config


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
