"""Every random stream of a run, derived from the run seed with its own domain tag.

A stream's 64-bit seed is ``SeedSequence([*seed_words, TAG, *ids])``: the run seed always
takes four 32-bit words (128 bits: a config seed or `secure_entropy`'s root), the tag comes
next and each tag always takes the same number of ids (each one 32-bit word), so the entropy
words say unambiguously which (seed, stream, ids) they came from and two streams can only
coincide by a 64-bit accident. Both fixed widths matter: a SeedSequence pads short entropy
with zeros, so ``[seed, rnd, cid]`` and ``[seed, rnd, 0xD9]`` — once client 217's training and
the DP noise — were the same stream; and it splits a big int into 32-bit words, so with a bare
``seed`` entry the run seed ``5 + (FATE << 32)`` drew SAMPLING round 1 as the run seed 5 drew
FATE (round SAMPLING, client 1).
Nothing here depends on the rank, so 1 or 96 ranks draw the same numbers.

Streams and their ids:
- ``MODEL_INIT`` (): initial weights (head, or everything for random-init presets);
- ``PARTITION`` (): which examples each client holds;
- ``SAMPLING`` (round): which clients a round samples;
- ``FATE`` (round, client): dropout and straggler draws;
- ``CLIENT`` (round, client): the client's training seed, the root of its three streams
  below (derived from that seed with no ids, so `client.train` needs only one number):
  - ``BATCHES``: its batch order (or DP-SGD's Poisson batches);
  - ``DROPOUT``: nn.Dropout masks (torch's global generator) while it trains;
  - ``SAMPLE_NOISE``: DP-SGD's per-step Gaussian noise;
- ``CLIENT_NOISE`` (round): client-level DP's Gaussian noise on the round's sum;
- ``DISPATCH`` (dispatch): which client an asynchronous server hands its n-th task
  (fedlib.engine.virtual; the task trains with ``CLIENT`` (version + 1, client), like a round).

With ``privacy.secure_noise`` the noise streams take OS entropy instead of the run seed
(`secure_entropy`), and so do the samples a DP guarantee's amplification by subsampling
assumes secret — client-level DP's Poisson client sampling and DP-SGD's Poisson batches
(`os_uniform`, instead of ``SAMPLING`` and ``BATCHES``) — so such a run cannot be replayed from
the config.
"""

from __future__ import annotations

import os
import secrets
from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    MODEL_INIT = 0x1D17
    PARTITION = 0x9A27
    SAMPLING = 0x5A5A
    FATE = 0xFA7E
    CLIENT = 0xC11E
    BATCHES = 0xBA7C
    DROPOUT = 0xD50F
    CLIENT_NOISE = 0xC015
    SAMPLE_NOISE = 0x5015
    DISPATCH = 0xD15A


ARITY = {Stream.MODEL_INIT: 0, Stream.PARTITION: 0, Stream.SAMPLING: 1, Stream.FATE: 2,
         Stream.CLIENT: 2, Stream.BATCHES: 0, Stream.DROPOUT: 0, Stream.SAMPLE_NOISE: 0,
         Stream.CLIENT_NOISE: 1, Stream.DISPATCH: 1}


def seed(run_seed: int, stream: Stream, *ids: int) -> int:
    """The stream's 64-bit seed (for torch.manual_seed / torch.Generator)."""
    if len(ids) != ARITY[stream]:
        raise ValueError(f"stream {stream.name} takes {ARITY[stream]} ids, got {len(ids)}")
    ss = np.random.SeedSequence([*words(run_seed), int(stream), *ids_of(ids)])
    return int(ss.generate_state(2).view(np.uint64)[0])  # = generate_state(1, uint64), faster


SEED_WORDS = 4  # the run seed's 32-bit words: 128 bits hold a config seed (< 2**64) and secure_entropy()


def words(run_seed: int) -> list[int]:
    """The run seed as SEED_WORDS 32-bit words, least significant first (a fixed width)."""
    run_seed = int(run_seed)
    if not 0 <= run_seed < 2 ** (32 * SEED_WORDS):
        raise ValueError(f"run seed must be in [0, 2**{32 * SEED_WORDS}), got {run_seed}")
    return [(run_seed >> (32 * i)) & 0xFFFFFFFF for i in range(SEED_WORDS)]


def ids_of(ids: tuple[int, ...]) -> list[int]:
    """Round and client ids, one 32-bit word each."""
    out = [int(i) for i in ids]
    if not all(0 <= i < 2**32 for i in out):
        raise ValueError(f"ids must be in [0, 2**32), got {out}")
    return out


def rng(run_seed: int, stream: Stream, *ids: int) -> np.random.Generator:
    return np.random.default_rng(seed(run_seed, stream, *ids))


def generator(run_seed: int, stream: Stream, *ids: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed(run_seed, stream, *ids))


def secure_entropy() -> int:
    """128 bits from the operating system's entropy source (os.urandom via `secrets`)."""
    return secrets.randbits(128)


def os_uniform(n: int) -> np.ndarray:
    """`n` uniforms in [0, 1) read straight from the operating system's entropy source (53 bits
    of os.urandom each, no generator state anyone could replay): the draws of a sample that must
    stay secret (under privacy.secure_noise, as Opacus's secure mode samples its Poisson
    batches from a secure generator)."""
    words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return (words >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
