"""The communication cost model (fedlib.lab.scaling): a known model recovered, and projected."""

import numpy as np
import pytest


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
