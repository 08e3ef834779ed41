"""Server rules against numbers computed by hand from the papers' equations, and their
equivalences. Every expected number below is a literal; the arithmetic is in the comments."""

from pathlib import Path

import pytest
import torch

from fedlib.config import ConfigError, StrategyConfig, from_dict
from fedlib.record import checkpoint
from fedlib.strategies import ServerState, server_step
from fedlib.wire.aggregate import Aggregate

# The hand-made problem: x0, three average client updates Δ1..Δ3.
X0 = torch.tensor([1.0, -2.0, 0.5])
DELTAS = [torch.tensor([0.4, -0.3, 0.0]), torch.tensor([0.2, 0.1, -0.5]), torch.tensor([-0.3, 0.2, 0.1])]
# Reddi et al. (2021) Algorithm 2 with η = 0.1, β1 = 0.9, β2 = 0.99, τ = 0.1 (so v_{-1} = τ² = 0.01).
ADAPTIVE = {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 0.1}

# First moment, the same for all three rules (m_{-1} = 0):
#   m1 = 0.1·Δ1                    = [0.04, -0.03, 0]
#   m2 = 0.9·m1 + 0.1·Δ2 = [0.036+0.02, -0.027+0.01, 0-0.05]      = [0.056, -0.017, -0.05]
#   m3 = 0.9·m2 + 0.1·Δ3 = [0.0504-0.03, -0.0153+0.02, -0.045+0.01] = [0.0204, 0.0047, -0.035]
# Step k adds 0.1·m_k / (√v_k + 0.1), element-wise.
EXPECTED = {
    # FedAdagrad: v_k = v_{k-1} + Δ_k²
    #   v1 = 0.01 + [0.16, 0.09, 0]     = [0.17, 0.10, 0.01];  √v1 = [0.412311, 0.316228, 0.1]
    #   step1 = 0.1·[0.04/0.512311, -0.03/0.416228, 0/0.2]    = [0.0078078, -0.0072076, 0]
    #   v2 = v1 + [0.04, 0.01, 0.25]    = [0.21, 0.11, 0.26];  √v2 = [0.458258, 0.331662, 0.509902]
    #   step2 = 0.1·[0.056/0.558258, -0.017/0.431662, -0.05/0.609902] = [0.0100312, -0.0039383, -0.0081980]
    #   v3 = v2 + [0.09, 0.04, 0.01]    = [0.30, 0.15, 0.27];  √v3 = [0.547723, 0.387298, 0.519615]
    #   step3 = 0.1·[0.0204/0.647723, 0.0047/0.487298, -0.035/0.619615] = [0.0031495, 0.0009645, -0.0056487]
    "fedadagrad": [[1.0078078, -2.0072076, 0.5],
                   [1.0178390, -2.0111459, 0.4918020],
                   [1.0209885, -2.0101814, 0.4861533]],
    # FedAdam: v_k = 0.99·v_{k-1} + 0.01·Δ_k²
    #   v1 = 0.0099 + [0.0016, 0.0009, 0] = [0.0115, 0.0108, 0.0099];  √v1 = [0.107238, 0.103923, 0.099499]
    #   step1 = 0.1·[0.04/0.207238, -0.03/0.203923, 0] = [0.0193015, -0.0147114, 0]
    #   v2 = 0.99·v1 + [0.0004, 0.0001, 0.0025] = [0.011385+0.0004, 0.010692+0.0001, 0.009801+0.0025]
    #      = [0.011785, 0.010792, 0.012301];  √v2 = [0.108559, 0.103885, 0.110910]
    #   step2 = 0.1·[0.056/0.208559, -0.017/0.203885, -0.05/0.210910] = [0.0268509, -0.0083381, -0.0237068]
    #   v3 = 0.99·v2 + [0.0009, 0.0004, 0.0001] = [0.01256715, 0.01108408, 0.01227799]
    #      √v3 = [0.112103, 0.105281, 0.110806]
    #   step3 = 0.1·[0.0204/0.212103, 0.0047/0.205281, -0.035/0.210806] = [0.0096180, 0.0022895, -0.0166029]
    "fedadam": [[1.0193015, -2.0147114, 0.5],
                [1.0461524, -2.0230495, 0.4762932],
                [1.0557704, -2.0207599, 0.4596903]],
    # FedYogi: v_k = v_{k-1} - 0.01·Δ_k²·sign(v_{k-1} - Δ_k²)
    #   v1: 0.01 < [0.16, 0.09] grow, Δ=0 stays: [0.01+0.0016, 0.01+0.0009, 0.01] = [0.0116, 0.0109, 0.01]
    #       √v1 = [0.107703, 0.104403, 0.1];  step1 = 0.1·[0.04/0.207703, -0.03/0.204403, 0]
    #           = [0.0192582, -0.0146769, 0]
    #   v2: Δ2² = [0.04, 0.01, 0.25]; 0.0116 < 0.04 grow, 0.0109 > 0.01 SHRINK, 0.01 < 0.25 grow
    #       = [0.0116+0.0004, 0.0109-0.0001, 0.01+0.0025] = [0.012, 0.0108, 0.0125]
    #       √v2 = [0.109545, 0.103923, 0.111803]
    #       step2 = 0.1·[0.056/0.209545, -0.017/0.203923, -0.05/0.211803]
    #           = [0.0267246, -0.0083365, -0.0236068]
    #   v3: Δ3² = [0.09, 0.04, 0.01]; grow, grow, 0.0125 > 0.01 SHRINK
    #       = [0.012+0.0009, 0.0108+0.0004, 0.0125-0.0001] = [0.0129, 0.0112, 0.0124]
    #       √v3 = [0.113578, 0.105830, 0.111355]
    #       step3 = 0.1·[0.0204/0.213578, 0.0047/0.205830, -0.035/0.211355]
    #           = [0.0095515, 0.0022834, -0.0165598]
    "fedyogi": [[1.0192582, -2.0146769, 0.5],
                [1.0459829, -2.0230134, 0.4763932],
                [1.0555344, -2.0207299, 0.4598334]],
}
# FedAdam with bias_correction: the same m, v; step k is multiplied by √(1-0.99^k) / (1-0.9^k):
#   k=1: √0.01/0.1 = 1.0 (so step1 is unchanged: [0.0193015, -0.0147114, 0])
#   k=2: √0.0199/0.19 = 0.141067/0.19 = 0.742460 → step2 = [0.0199357, -0.0061907, -0.0176014]
#   k=3: √0.029701/0.271 = 0.172340/0.271 = 0.635940 → step3 = [0.0061164, 0.0014560, -0.0105585]
EXPECTED_ADAM_BC = [[1.0193015, -2.0147114, 0.5],
                    [1.0392372, -2.0209021, 0.4823986],
                    [1.0453537, -2.0194461, 0.4718402]]


def _steps(cfg: StrategyConfig, state: ServerState | None = None, deltas=DELTAS) -> list[ServerState]:
    out, s = [], state or ServerState(X0.clone())
    for d in deltas:
        prev, before = s, s.weights.clone()
        s = server_step(prev, d, cfg)
        assert torch.equal(prev.weights, before), "server_step mutated its input"
        out.append(s)
    return out


def test_the_aggregate_mean_is_the_sample_weighted_average():
    agg = Aggregate.zeros(2)
    for n, delta in [(10, torch.tensor([1.0, 2.0])), (30, torch.tensor([5.0, -2.0]))]:
        agg.total.add_(delta, alpha=n)
        agg.count_(n)
    avg = agg.mean()
    # (10*1 + 30*5)/40 = 4.0 ; (10*2 - 30*2)/40 = -1.0
    assert torch.allclose(avg, torch.tensor([4.0, -1.0]))


def test_fedavg_applies_server_lr():
    s = server_step(ServerState(X0), DELTAS[0], StrategyConfig(algorithm="fedavg", server_lr=0.5))
    assert torch.allclose(s.weights, X0 + 0.5 * DELTAS[0]) and s.round == 1


@pytest.mark.parametrize("alg", sorted(EXPECTED))
def test_adaptive_three_steps_match_hand_computation(alg):
    states = _steps(StrategyConfig(algorithm=alg, **ADAPTIVE))
    for k, (s, want) in enumerate(zip(states, EXPECTED[alg], strict=True), 1):
        torch.testing.assert_close(s.weights, torch.tensor(want), rtol=0, atol=2e-6, msg=f"{alg} step {k}")
        assert s.round == k and s.opt_state["t"] == k


def test_fedadam_bias_correction_matches_hand_computation():
    states = _steps(StrategyConfig(algorithm="fedadam", bias_correction=True, **ADAPTIVE))
    for s, want in zip(states, EXPECTED_ADAM_BC, strict=True):
        torch.testing.assert_close(s.weights, torch.tensor(want), rtol=0, atol=2e-6)


def test_adaptive_moments_are_the_papers():
    """Second moments after three steps, and m3, straight from the comments above."""
    cfgs = {a: StrategyConfig(algorithm=a, **ADAPTIVE) for a in EXPECTED}
    m3 = torch.tensor([0.0204, 0.0047, -0.035])
    v3 = {"fedadagrad": [0.30, 0.15, 0.27], "fedadam": [0.01256715, 0.01108408, 0.01227799],
          "fedyogi": [0.0129, 0.0112, 0.0124]}
    for alg, cfg in cfgs.items():
        opt = _steps(cfg)[-1].opt_state
        torch.testing.assert_close(opt["m"], m3, rtol=0, atol=1e-7)
        torch.testing.assert_close(opt["v"], torch.tensor(v3[alg]), rtol=1e-6, atol=0)


def test_fedavgm_matches_hand_computation():
    # Hsu et al. (2019): v = β·v + Δ, x = x + η·v, v_{-1} = 0; η = 0.5, β = 0.9
    #   v1 = Δ1 = [0.4, -0.3, 0];              x1 = x0 + 0.5·v1 = [1.2, -2.15, 0.5]
    #   v2 = 0.9·v1 + Δ2 = [0.36+0.2, -0.27+0.1, 0-0.5] = [0.56, -0.17, -0.5]
    #                                          x2 = x1 + 0.5·v2 = [1.48, -2.235, 0.25]
    s1, s2 = _steps(StrategyConfig(algorithm="fedavgm", server_lr=0.5, momentum=0.9), deltas=DELTAS[:2])
    torch.testing.assert_close(s1.weights, torch.tensor([1.2, -2.15, 0.5]))
    torch.testing.assert_close(s2.weights, torch.tensor([1.48, -2.235, 0.25]))


def test_fedopt_sgd_lr1_equals_fedavg():
    a = _steps(StrategyConfig(algorithm="fedavgm", server_lr=1.0, momentum=0.0))
    b = _steps(StrategyConfig(algorithm="fedavg", server_lr=1.0))
    torch.testing.assert_close(a[-1].weights, b[-1].weights, rtol=0, atol=1e-7)


@pytest.mark.parametrize("alg", ["fedyogi", "fedavgm"])
def test_server_state_round_trips_a_checkpoint(alg, tmp_path: Path):
    cfg = StrategyConfig(algorithm=alg, **({"server_lr": 0.1} if alg == "fedavgm" else ADAPTIVE))
    whole = _steps(cfg)[-1]
    first = _steps(cfg, deltas=DELTAS[:2])[-1]
    checkpoint.save(tmp_path, first, {"k": 1})
    loaded, _ = checkpoint.load(tmp_path)
    resumed = _steps(cfg, loaded, deltas=DELTAS[2:])[-1]
    assert torch.equal(resumed.weights, whole.weights) and resumed.round == 3


def test_config_rejects_what_the_algorithms_do_not_define():
    with pytest.raises(ConfigError, match="strategy.bias_correction"):
        StrategyConfig(algorithm="fedadagrad", bias_correction=True)
    with pytest.raises(ConfigError, match="client.mu"):
        from_dict({"strategy": {"algorithm": "fedprox"}, "client": {"mu": 0.0}})
    with pytest.raises(ConfigError, match="client.mu.*fedprox"):
        from_dict({"strategy": {"algorithm": "fedavg"}, "client": {"mu": 0.01}})
    assert from_dict({"strategy": {"algorithm": "fedadam"}, "client": {"mu": 0.01}}).client.mu == 0.01
