"""`bench comm`: payload sizes counted from the real configs, and a round's communication timed
through fedlib's own wire code on MPI ranks."""

import pytest

from fedlib.bench import comm, payloads


def test_payloads_count_what_fedlib_would_send():
    # MiniLM's head on mean-pooled features: 384 × 7 + 7
    assert payloads.trainable("head (MiniLM probe)") == 384 * 7 + 7
    # LoRA r8 on BERT-base's query and value: 12 layers × 2 modules × 8 × (768 + 768), + the head
    assert payloads.trainable("LoRA r8 (BERT-base)") == 12 * 2 * 8 * (768 + 768) + 768 * 7 + 7
    assert payloads.trainable("BERT-base") == 109_487_623  # 109,482,240 + the 7-way head
    with pytest.raises(KeyError, match="payload 'gpt'"):
        payloads.trainable("gpt")


def test_memory_guard_names_what_to_drop(monkeypatch):
    monkeypatch.setattr(comm, "_available", lambda: 10**9)
    with pytest.raises(MemoryError, match="8 ranks x 4 buffers of 100,000,000 floats need 12.8 GB"):
        comm.measure([2, 8], {"big": 100_000_000}, reps=1)


@pytest.mark.mpi
def test_one_round_of_each_algorithm_on_two_ranks():
    df = comm.measure([2], {"tiny": 1000}, reps=2)
    assert len(df) == 2 * 2 and set(df["algorithm"]) == {"collective", "p2p"} and (df["comm_s"] > 0).all()
    by = df.groupby("algorithm").first()
    # collective: one allreduce of 1000 + 2 floats from every rank
    assert by.loc["collective", "bytes_rank0"] == by.loc["collective", "bytes_other_max"] == 1002 * 4
    # star: rank 1 sends a header (8 bytes) and its message; rank 0 broadcasts 1000 floats to 1 rank
    assert by.loc["p2p", "bytes_other_max"] == 8 + 1002 * 4 and by.loc["p2p", "bytes_rank0"] == 1000 * 4
    assert (df["clients"] == df["ranks"]).all() and df["rep"].tolist().count(1) == 2
