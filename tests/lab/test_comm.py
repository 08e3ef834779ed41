"""The communication study: the Hockney α–β model (`fedlib.lab.scaling`) recovers known α, β and
its lack-of-fit test rejects a wrong form; its projections by hand; the claims (`comm_claims`)
with their `basis`; the round's synchronization share without the server step; and the design
property that the collective's bytes per rank do not depend on the clients a rank holds."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fedlib.lab import claims, comm_claims, scaling, sync_claims

PAYLOADS = {"a": 1e4, "b": 1e6, "c": 1e7, "d": 1e8}  # bytes


def _bench(alg_forms, alpha=5e-5, beta=2e-10, ranks=(2, 4, 8), reps=5, noise=0.0, seed=0, payloads=PAYLOADS):
    """`bench comm`-shaped rows timed by a known form per algorithm, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for alg, fname in alg_forms.items():
        f = scaling.form(alg, fname)
        for r in ranks:
            for name, b in payloads.items():
                t = f.latency(r) * alpha + f.volume(r) * b * beta
                for k in range(reps):
                    rows.append(
                        {
                            "algorithm": alg,
                            "ranks": r,
                            "clients": r,
                            "payload": name,
                            "payload_bytes": b,
                            "rep": k,
                            "comm_s": t * (1 + noise * rng.standard_normal()),
                            "cores": 2,
                        }
                    )
    return pd.DataFrame(rows)


def test_lack_of_fit_f_test_by_hand():
    # cells A: 1, 3 (mean 2, fitted 2.5); B: 4, 6 (mean 5, fitted 5.5); one parameter
    # SS_pe = 1 + 1 + 1 + 1 = 4 on 4 − 2 = 2 dof; SS_lof = 2·0.25 + 2·0.25 = 1 on 2 − 1 = 1 dof
    # F = (1/1) / (4/2) = 0.5; F(1, 2) = t²(2): p = 1 − t/√(2 + t²) at t = √0.5 → 0.552786
    lof = scaling.lack_of_fit(
        np.array([1.0, 3, 4, 6]),
        np.array(["A", "A", "B", "B"]),
        np.array([2.5, 2.5, 5.5, 5.5]),
        np.ones(4),
        params=1,
    )
    assert (lof.f, lof.df_lof, lof.df_pe) == (pytest.approx(0.5), 1, 2)
    assert lof.p == pytest.approx(1 - math.sqrt(0.5) / math.sqrt(2.5), rel=1e-9)


@pytest.mark.parametrize("alg", ["collective", "p2p"])
def test_fit_recovers_known_alpha_beta(alg):
    exact = scaling.fit(_bench({alg: None}), alg)
    assert exact.alpha == pytest.approx(5e-5, rel=1e-9) and exact.beta == pytest.approx(2e-10, rel=1e-9)
    assert exact.r2 == pytest.approx(1.0) and exact.max_rel_resid < 1e-9
    noisy = [scaling.fit(_bench({alg: None}, noise=0.05, seed=s), alg) for s in range(100)]  # 5 % noise
    assert all(
        f.alpha == pytest.approx(5e-5, rel=0.1) and f.beta == pytest.approx(2e-10, rel=0.05) for f in noisy
    )
    # the 95 % intervals cover the truth in about 95 % of the data sets; the right form is rejected
    # at 5 % in about 5 % of them
    cover_a = np.mean([abs(f.alpha - 5e-5) < f.alpha_half for f in noisy])
    cover_b = np.mean([abs(f.beta - 2e-10) < f.beta_half for f in noisy])
    assert 0.88 <= cover_a <= 0.995 and 0.88 <= cover_b <= 0.995
    assert 0.005 <= np.mean([f.lof.p < 0.05 for f in noisy]) <= 0.12
    assert (noisy[0].lof.df_lof, noisy[0].lof.df_pe) == (12 - 2, 60 - 12)


def test_lack_of_fit_rejects_a_wrong_form_that_r2_accepts():
    """Data from the star (R−1 payloads through rank 0) fitted with the ring's 2(R−1)/R: R² still
    reads high, the lack-of-fit test rejects it."""
    df = _bench({"p2p": None}, noise=0.05).assign(algorithm="collective")
    wrong = scaling.fit(df, "collective", "ring")
    assert wrong.lof.p < 1e-6 and wrong.r2 > 0.5
    table = scaling.fits(_bench({"collective": "ring"}, noise=0.05)).set_index("form")
    assert table.loc["ring", "lof_p"] > 0.05 and table.loc["recursive doubling", "lof_p"] < 1e-6


def test_projection_by_hand():
    net = scaling.Network("n", bandwidth=25e9, latency=2e-6)
    # ring allreduce, 96 ranks, 46.76 MB: 190 latencies + 2·95/96 payloads at 25 GB/s
    assert scaling.project(46.76e6, 96, "collective", net) == pytest.approx(
        190 * 2e-6 + 2 * 95 / 96 * 46.76e6 / 25e9
    )
    # star, 8 ranks: 2·7 + 3 messages, 7 + 3 payloads
    assert scaling.project(1e8, 8, "p2p", net) == pytest.approx(17 * 2e-6 + 10 * 1e8 / 25e9)
    assert scaling.project(1e8, 1, "p2p", net) == 0.0
    proj = scaling.projection({"x": 1e8}, [2, 96], net)
    assert set(proj["basis"]) == {
        "projected (ring, n: α=2 µs, 25 GB/s)",
        "projected (star + binomial broadcast, n: α=2 µs, 25 GB/s)",
    }


def test_interconnects_quote_their_sources(tmp_path):
    nets = scaling.networks()
    s11 = nets["slingshot-11"]
    assert s11.bandwidth == 25e9 and s11.latency == 2e-6 and "https://" in s11.source
    bad = tmp_path / "i.yaml"
    bad.write_text("x: {bandwidth_gb_s: 1, latency_us: 1, bandwidth_source: s}\n")
    with pytest.raises(KeyError, match="i.yaml: interconnect 'x' has no latency_source"):
        scaling.networks(bad)


# ---- claims from `bench comm` rows --------------------------------------------------------------
STUDY = {"s": 4e7, "m": 4e8, "l": 7e8}


@pytest.mark.parametrize(
    "curve,verdict,word",
    [
        (lambda n: 0.01 + 0.05 * n, claims.HOLDS, "a line"),
        (lambda n: 0.01 * n**2, claims.FAILS, "a curve"),  # R² 0.99: a line by an R² rule
        (lambda n: 0.5 * math.sqrt(n), claims.FAILS, "a curve"),
        (lambda n: 0.30 + 0.001 * n, claims.FAILS, "flat"),
    ],
)
def test_linear_in_clients_tests_the_quadratic_term(curve, verdict, word):
    x = np.array([2, 6, 12] * 2, dtype=float)
    y = np.array([curve(n) + 0.002 * (-1) ** i for i, n in enumerate(x)])
    row = comm_claims.linear("p2p", x, y, "", {})
    assert row["verdict"] == verdict and word in row["note"], (row["effect"], row["ci_low"], row["ci_high"])
    assert row["n"] == 6 and row["basis"] == "measured"


def test_p2p_linear_in_clients_holds_for_a_star_and_fails_for_a_curve():
    df = _bench({"p2p": "star + pipelined broadcast", "collective": None}, noise=0.02)  # exactly linear in R
    t = {r["claim"]: r for r in comm_claims.comm_claims(df, study=STUDY)}
    row = t["p2p star comm time linear in clients (d, one client per rank)"]
    assert (
        row["verdict"] == claims.HOLDS
        and row["basis"] == "measured"
        and "lack of fit F(10, 48)" in row["note"]
    )
    curved = df.assign(comm_s=lambda d: d["comm_s"] * d["ranks"])  # ∝ R²
    rows = comm_claims.comm_claims(curved, study=STUDY)
    assert rows[0]["verdict"] == claims.FAILS and "a curve" in rows[0]["note"]


def test_proportional_to_size_fails_where_latency_dominates_small_payloads():
    bandwidth = _bench({"collective": None, "p2p": None}, alpha=0.0, noise=0.02)
    t = {r["claim"]: r for r in comm_claims.comm_claims(bandwidth, study=STUDY)}
    assert (
        t["comm time proportional to model size (collective, 8 clients on 8 ranks)"]["verdict"]
        == claims.HOLDS
    )
    latency = _bench({"collective": None, "p2p": None}, alpha=1e-3, noise=0.02)  # n½ = 5 MB
    row = {r["claim"]: r for r in comm_claims.comm_claims(latency, study=STUDY)}[
        "comm time proportional to model size (p2p, 8 clients on 8 ranks)"
    ]
    assert row["verdict"] == claims.FAILS and row["effect"] < 0.8 and "n½ = α/β = 4.97 MB" in row["note"]


def test_projected_rows_are_points_labelled_with_their_form_and_network():
    rows = comm_claims.comm_claims(
        _bench({"collective": None, "p2p": None}, noise=0.02), study=STUDY, clients=[2, 8, 32, 96]
    )
    proj = [r for r in rows if r["basis"] != "measured"]
    assert len(proj) == 3 and all(
        r["basis"].startswith("projected (") and "slingshot-11" in r["basis"] for r in proj
    )
    assert all(r["n"] == 1 and math.isnan(r["ci_low"]) for r in proj)  # a projection has no CI
    line = next(r for r in proj if "linear" in r["claim"])
    assert line["claim"] == "p2p star comm time linear in clients up to 96 (l, projected)"
    assert line["verdict"] == claims.HOLDS and abs(line["effect"]) < 0.05
    size = next(r for r in proj if "(collective" in r["claim"])
    b = np.array(sorted(STUDY.values()))  # ring at 96 ranks: 190 latencies of 2 µs + 2·95/96 payloads
    hand = np.polyfit(np.log(b), np.log(190 * 2e-6 + 2 * 95 / 96 * b / 25e9), 1)[0]
    assert (
        size["effect"] == pytest.approx(hand, rel=1e-9)
        and 0.95 < hand < 0.97
        and size["verdict"] == claims.HOLDS
    )


# ---- 06: synchronization vs the server step -----------------------------------------------------
def _rounds(aggregate_s, strategies=("collective (baseline)", "p2p star")):
    return pd.DataFrame(
        [
            {
                "strategy": s,
                "clients": 12,
                "ranks": 2,
                "seed": i,
                "model": "bert-base-uncased",
                "pack_s": 0.1,
                "comm_s": 0.05 + 0.01 * i,
                "wait_s": 0.1,
                "aggregate_s": aggregate_s,
                "compute_s": 0.3,
                "round_s": 1.0,
                "local_steps": 1,
                "batch_size": 2,
                "max_length": 16,
            }
            for s in strategies
            for i in range(3)
        ]
    )


def test_dominance_counts_pack_comm_wait_and_the_server_step_gets_its_own_row():
    """Old rule: (pack + comm + wait + aggregate) / round = 0.26 + 0.45 = 0.71 "holds"; the
    synchronization alone is 0.25, 0.26, 0.27 of the round: CI [0.225, 0.285], does not hold."""
    rows = sync_claims.sync_claims(_rounds(0.45))
    assert len(rows) == 4
    sync = next(
        r for r in rows if r["claim"].startswith("comm + sync") and "(collective (baseline);" in r["claim"]
    )
    assert sync["effect"] == pytest.approx(0.26) and sync["verdict"] == claims.FAILS
    assert sync["ci_high"] == pytest.approx(0.26 + 4.302653 * 0.01 / math.sqrt(3), rel=1e-5)
    assert "bert-base-uncased, 1 local steps × batch 2 × 16 tokens, 12 clients on 2 ranks" in sync["claim"]
    assert "compute/comm = 5" in sync["note"] and sync["basis"] == "measured"  # 0.3 / mean(0.05, 0.06, 0.07)
    server = next(
        r for r in rows if r["claim"].startswith("the server's aggregation") and "(p2p star;" in r["claim"]
    )
    assert server["effect"] == pytest.approx(0.45) and server["verdict"] == claims.FAILS
    assert sync_claims.SYNC == ["pack_s", "comm_s", "wait_s"]


# ---- the design property the collective rests on ------------------------------------------------
class _Recorder:
    """A comm of `size` ranks seen from `rank`: counts the bytes it hands over, moves nothing."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size, self.bytes_sent, self.copy_s = rank, size, 0, 0.0
        self.serialized_threads = True

    def allreduce(self, buf):
        self.bytes_sent += buf.numel() * buf.element_size()

    def send(self, buf, dest, tag=0):
        self.bytes_sent += buf.numel() * buf.element_size()

    def barrier(self, idle=False):
        return None


def _bytes_sent(mode: str, clients: int, numel: int = 1000) -> int:
    from fedlib.wire import exchange
    from fedlib.wire.aggregate import Update
    from fedlib.wire.flat import FlatParams
    from fedlib.wire.timer import Timer

    comm = _Recorder(rank=1, size=2)
    flat = FlatParams(nn.ParameterList([nn.Parameter(torch.ones(numel))]), bind=True)
    ex = exchange.make(comm, numel, mode)
    ex.begin([list(range(0, 2 * clients, 2)), list(range(1, 2 * clients, 2))])
    timer = Timer()
    for cid in range(1, 2 * clients, 2):
        ex.submit(Update(cid, 1, flat, torch.zeros(numel), 1.0), timer)
    ex.finish(timer)
    return comm.bytes_sent


def test_collective_bytes_per_rank_do_not_depend_on_its_clients():
    """Rank 1 of 2 holding 1, 5 or 40 virtual clients sends one allreduce of numel + 2 floats;
    the star sends each client's header (8 bytes) and message (numel + 2 floats)."""
    assert [_bytes_sent("collective", n) for n in (1, 5, 40)] == [1002 * 4] * 3
    assert [_bytes_sent("p2p", n) for n in (1, 5, 40)] == [n * (8 + 1002 * 4) for n in (1, 5, 40)]
