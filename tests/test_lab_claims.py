"""fedlib.lab.claims on synthetic tables: a clear holds, a clear does-not-hold, and an
overlapping-CI case that stays not resolved; the scaling claims on exact lines."""

import pandas as pd

from fedlib.lab import claims


def _runs(groups, **const):
    """One row per (settings, accuracy) value, seeds 0..k-1 within each group."""
    rows = []
    for settings, accs in groups:
        rows += [{**const, **settings, "seed": i, "accuracy": a} for i, a in enumerate(accs)]
    return pd.DataFrame(rows)


BASE = {"majority_rate": 0.57, "rounds": 5, "trainable": "full", "model": "minilm"}


def test_dropout_holds_fails_and_unresolved():
    df = _runs([({"participation.dropout": 0.0}, [0.80, 0.81, 0.82]),
                ({"participation.dropout": 0.2}, [0.80, 0.805, 0.81]),   # drop 0.005, CI ±0.02
                ({"participation.dropout": 0.5}, [0.60, 0.61, 0.62]),    # drop 0.2, separated
                ({"participation.dropout": 0.7}, [0.70, 0.80, 0.90])],   # wide: overlaps
               clients=8, **BASE)
    t = claims.table({"dropout": df}).set_index("claim")
    assert t.loc["accuracy stable under dropout p=0.2 (vs none)", "verdict"] == claims.HOLDS
    row = t.loc["accuracy stable under dropout p=0.5 (vs none)"]
    assert row["verdict"] == claims.FAILS
    # Welch: d = -0.2, se = sqrt(2 * 0.0001 / 3) = 0.008165, dof 4: half = 2.776445 * 0.008165
    assert abs(row["effect"] + 0.2) < 1e-9 and abs(row["ci_high"] - (-0.2 + 0.022669)) < 1e-5
    assert row["n"] == 3 and row["budget"] == "8 clients, 5 rounds, full, 3 seeds"
    assert t.loc["accuracy stable under dropout p=0.7 (vs none)", "verdict"] == claims.OPEN


def test_one_seed_or_a_reference_that_does_not_learn_is_not_resolved():
    one = _runs([({"participation.dropout": 0.0}, [0.8]), ({"participation.dropout": 0.5}, [0.5])],
                clients=8, **BASE)
    assert set(claims.dropout_claims(one)[i]["verdict"] for i in (0, 1)) == {claims.OPEN}
    stuck = _runs([({"clients": 2}, [0.57, 0.57, 0.57]), ({"clients": 16}, [0.57, 0.57, 0.57])], **BASE)
    (row,) = claims.clients_claims(stuck)
    assert row["verdict"] == claims.OPEN and "does not learn" in row["note"]


def test_privacy_compares_with_the_same_trainable_part():
    head = {**BASE, "trainable": "frozen all_but_head"}
    df = pd.concat([
        _runs([({}, [0.80, 0.81, 0.82])], **head, clients=8),
        _runs([({"privacy.mode": "client", "privacy.target_epsilon": 8.0}, [0.80, 0.81, 0.815])], **head,
              clients=8),
        _runs([({}, [0.60, 0.60, 0.61])], **BASE, clients=8),  # another trainable part: not the reference
    ])
    t = claims.table({"privacy": df}).set_index("claim")
    claim = "accuracy within 0.03 of non-private under client-level DP-FedAvg ε=8"
    assert t.loc[claim, "verdict"] == claims.HOLDS
    assert "not run" in t.loc["accuracy within 0.03 of non-private under DP-SGD ε=2", "note"]


def test_comm_linear_and_proportional_and_sync_share():
    rows = []
    for model, gb in (("small", 0.05), ("big", 0.4), ("mid", 0.2)):
        for n in (2, 6, 12):
            rows.append({"model": model, "aggregation": "p2p", "clients": n, "payload_bytes": gb * 1e9,
                         "comm_wait_s": 0.01 + gb * n + 0.001 * (n % 4), "rounds": 2, "trainable": "full"})
            rows.append({"model": model, "aggregation": "collective", "clients": n, "payload_bytes": gb * 1e9,
                         "comm_wait_s": 0.3 + 0.01 * (-1) ** n * (n % 5), "rounds": 2, "trainable": "full"})
    t = claims.comm_claims(pd.DataFrame(rows))
    v = {r["claim"]: r["verdict"] for r in t}
    assert v["comm time linear in clients (p2p, big)"] == claims.HOLDS
    assert v["comm time linear in clients (collective, big)"] != claims.HOLDS
    assert v["comm time proportional to model size (p2p, 12 clients)"] == claims.HOLDS
    sys_rows = [{"strategy": s, "clients": 16, "seed": i, "pack_s": 0.1, "comm_s": c, "wait_s": 0.1,
                 "aggregate_s": 0.0, "round_s": 1.0}
                for s, cs in (("collective (baseline)", (0.1, 0.12, 0.11)), ("p2p star", (0.6, 0.62, 0.61)))
                for i, c in enumerate(cs)]
    s = {r["claim"]: r["verdict"] for r in claims.sync_claims(pd.DataFrame(sys_rows))}
    assert s["comm + sync dominate the round at scale (collective (baseline))"] == claims.FAILS
    assert s["comm + sync dominate the round at scale (p2p star)"] == claims.HOLDS


def test_missing_notebooks_leave_their_claims_unresolved():
    t = claims.table({})
    assert len(t) == len(claims.CHECKS) and set(t["verdict"]) == {claims.OPEN}


def test_separate_intervals_with_a_drop_ci_across_the_tolerance_stay_open():
    """Drop 0.023 with its CI reaching past 0.03: the intervals separate, so the note must not
    say they overlap; the verdict stays open (neither within nor beyond the tolerance)."""
    df = _runs([({"participation.dropout": 0.0}, [0.705, 0.706, 0.707]),
                ({"participation.dropout": 0.2}, [0.676, 0.683, 0.690])], clients=32, **BASE)
    row = claims.dropout_claims(df)[0]  # p=0.2 (p=0.5: not run)
    assert row["verdict"] == claims.OPEN and "intervals separate" in row["note"], row["note"]
    assert row["ci_low"] < -0.03 < row["effect"]


def test_budget_lists_client_counts_in_numeric_order():
    df = _runs([({"clients": c}, [0.8]) for c in (12, 2, 6)], **BASE)
    assert claims.budget(df) == "2/6/12 clients, 5 rounds, full, 1 seed"
