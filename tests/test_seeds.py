"""Every random stream has its own domain tag: no two streams of a run share a seed."""

import numpy as np
import pytest

from fedlib import seeds
from fedlib.seeds import Stream


def test_streams_never_coincide():
    rounds, clients, run_seed = 200, 300, 0
    out = [seeds.seed(run_seed, Stream.MODEL_INIT), seeds.seed(run_seed, Stream.PARTITION)]
    for r in range(1, rounds + 1):
        out += [seeds.seed(run_seed, Stream.SAMPLING, r), seeds.seed(run_seed, Stream.CLIENT_NOISE, r)]
        for c in range(clients):
            root = seeds.seed(run_seed, Stream.CLIENT, r, c)
            out += [root, seeds.seed(run_seed, Stream.FATE, r, c),
                    *(seeds.seed(root, s) for s in (Stream.BATCHES, Stream.DROPOUT, Stream.SAMPLE_NOISE))]
    assert len(out) == 2 + rounds * (2 + 5 * clients)
    assert len(set(out)) == len(out)


def test_old_collision_noise_vs_client_217_is_gone():
    # before: client training SeedSequence([seed, rnd, cid]) and the client-level DP noise
    # SeedSequence([seed, rnd, 0xD9]) were one stream for cid = 217 = 0xD9
    old = [int(np.random.SeedSequence(e).generate_state(1)[0]) for e in ([0, 5, 217], [0, 5, 0xD9])]
    assert old[0] == old[1]
    assert seeds.seed(0, Stream.CLIENT, 5, 217) != seeds.seed(0, Stream.CLIENT_NOISE, 5)
    # a SeedSequence pads with zeros: a fixed arity per tag keeps [.., r] and [.., r, 0] apart
    with pytest.raises(ValueError, match="CLIENT_NOISE takes 1 ids"):
        seeds.seed(0, Stream.CLIENT_NOISE, 5, 0)


def test_seeds_are_stable_64_bit_values():
    s = seeds.seed(7, Stream.FATE, 3, 4)
    assert s == seeds.seed(7, Stream.FATE, 3, 4) and 0 <= s < 2**64
    assert s != seeds.seed(8, Stream.FATE, 3, 4) != seeds.seed(7, Stream.FATE, 4, 3)
    assert seeds.secure_entropy() != seeds.secure_entropy()


def test_seed_is_the_seed_sequences_first_64_bit_word():
    """The faster extraction (two 32-bit words viewed as one) is the documented definition."""
    for run_seed, stream, ids in [(0, Stream.CLIENT, (1, 2)), (2**64 - 1, Stream.DROPOUT, ()),
                                  (2**63 + 5, Stream.BATCHES, ()), (12345, Stream.FATE, (999, 2**31))]:
        words = [(run_seed >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
        ss = np.random.SeedSequence([*words, int(stream), *ids])
        assert seeds.seed(run_seed, stream, *ids) == int(ss.generate_state(1, dtype=np.uint64)[0])


def test_run_seed_takes_a_fixed_number_of_words():
    """A big run seed no longer spills into the tag and ids: before, SeedSequence split the bare
    seed 5 + (FATE << 32) into the words [5, FATE], so that run's SAMPLING stream of round 1 was
    run 5's FATE stream of (round SAMPLING, client 1)."""
    big = 5 + (int(Stream.FATE) << 32)
    old = [int(np.random.SeedSequence(e).generate_state(1, dtype=np.uint64)[0])
           for e in ([big, int(Stream.SAMPLING), 1], [5, int(Stream.FATE), int(Stream.SAMPLING), 1])]
    assert old[0] == old[1]
    assert seeds.seed(big, Stream.SAMPLING, 1) != seeds.seed(5, Stream.FATE, int(Stream.SAMPLING), 1)
    # every seed below 2**32 and its 2**32 shifts are distinct runs
    assert len({seeds.seed(5 + (k << 32), Stream.MODEL_INIT) for k in range(64)}) == 64
    assert seeds.seed(2**127 + 5, Stream.SAMPLING, 1) != seeds.seed(5, Stream.SAMPLING, 1)  # secure roots
    with pytest.raises(ValueError, match="ids must be"):
        seeds.seed(0, Stream.SAMPLING, 2**32)
    with pytest.raises(ValueError, match="run seed must be"):
        seeds.seed(2**128, Stream.SAMPLING, 1)
