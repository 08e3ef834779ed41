"""Server rules against hand-computed numbers (numpy), and their equivalences."""

import numpy as np
import torch

from fedlib.config import StrategyConfig
from fedlib.strategies import ServerState, server_step, weighted_average

W = torch.tensor([1.0, -2.0, 0.5])
D1 = torch.tensor([0.2, 0.4, -0.6])
D2 = torch.tensor([-0.1, 0.3, 0.2])


def test_weighted_average_known_answer():
    avg = weighted_average([(10, torch.tensor([1.0, 2.0])), (30, torch.tensor([5.0, -2.0]))])
    # (10*1 + 30*5)/40 = 4.0 ; (10*2 - 30*2)/40 = -1.0
    assert torch.allclose(avg, torch.tensor([4.0, -1.0]))


def test_fedavg_applies_server_lr():
    s = server_step(ServerState(W), D1, StrategyConfig(algorithm="fedavg", server_lr=0.5))
    assert torch.allclose(s.weights, W + 0.5 * D1) and s.round == 1


def _two_steps(alg: str, **kw):
    cfg = StrategyConfig(algorithm=alg, **kw)
    s0 = ServerState(W.clone())
    s1 = server_step(s0, D1, cfg)
    s2 = server_step(s1, D2, cfg)
    assert torch.equal(s0.weights, W), "server_step must not mutate its input"
    return s1.weights.numpy(), s2.weights.numpy()


def test_fedadam_two_steps_match_numpy():
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    w, m, v = W.numpy().astype(np.float64), 0.0, 0.0
    expect = []
    for t, d in enumerate([D1.numpy(), D2.numpy()], 1):
        g = -d
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + tau)
        expect.append(w.copy())
    got = _two_steps("fedadam", server_lr=lr, beta1=b1, beta2=b2, tau=tau)
    np.testing.assert_allclose(got[0], expect[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], expect[1], rtol=1e-5)


def test_fedyogi_two_steps_match_numpy():
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    w, m, v = W.numpy().astype(np.float64), 0.0, 0.0
    expect = []
    for t, d in enumerate([D1.numpy(), D2.numpy()], 1):
        g = -d
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * g * g * np.sign(v - g * g)
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + tau)
        expect.append(w.copy())
    got = _two_steps("fedyogi", server_lr=lr, beta1=b1, beta2=b2, tau=tau)
    np.testing.assert_allclose(got[0], expect[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], expect[1], rtol=1e-5)


def test_fedadagrad_two_steps_match_numpy():
    lr, tau = 0.1, 1e-3
    w, v = W.numpy().astype(np.float64), 0.0
    expect = []
    for d in [D1.numpy(), D2.numpy()]:
        g = -d
        v = v + g * g
        w = w - lr * g / (np.sqrt(v) + tau)
        expect.append(w.copy())
    got = _two_steps("fedadagrad", server_lr=lr, tau=tau)
    np.testing.assert_allclose(got[1], expect[1], rtol=1e-5)


def test_fedavgm_two_steps_match_numpy():
    lr, mom = 0.5, 0.9
    w, buf = W.numpy().astype(np.float64), None
    for d in [D1.numpy(), D2.numpy()]:
        g = -d
        buf = g if buf is None else mom * buf + g
        w = w - lr * buf
    got = _two_steps("fedavgm", server_lr=lr, momentum=mom)
    np.testing.assert_allclose(got[1], w, rtol=1e-5)


def test_fedopt_sgd_lr1_equals_fedavg():
    a = _two_steps("fedavgm", server_lr=1.0, momentum=0.0)
    b = _two_steps("fedavg", server_lr=1.0)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-7)
