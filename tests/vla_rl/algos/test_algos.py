"""Each algorithm against a slow plain-loop reference over several seeds and shapes, plus hand cases."""

import math

import pytest
import torch

from vla_rl.algos import ADVANTAGES, POLICY_LOSSES, agg_loss, compute_advantages, kl_penalty
from vla_rl.algos.rewards import majority_vote_rewards, overlong_penalty
from vla_rl.algos.sampling import informative_groups, mix_off_policy
from vla_rl.registry import RegistryError

SEEDS = [0, 1, 2]
SHAPES = [(6, 5), (16, 9), (3, 1)]


def rand_batch(seed, b, length, groups=None):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, length, generator=g) * 3
    old = logp + 0.3 * torch.randn(b, length, generator=g)
    adv = torch.randn(b, generator=g)
    mask = (torch.rand(b, length, generator=g) > 0.25).float()
    mask[:, 0] = 1
    return logp.requires_grad_(), old, adv, mask


# ---- advantages --------------------------------------------------------------------------------
def loop_advantages(name, rewards, group, eps=1e-6):
    out = []
    for i in range(len(rewards)):
        members = [float(rewards[j]) for j in range(len(rewards)) if group[j] == group[i]]
        n = len(members)
        if n == 1:
            out.append(0.0)
            continue
        mean = sum(members) / n
        if name == "grpo":
            std = math.sqrt(sum((x - mean) ** 2 for x in members) / (n - 1))
            out.append((float(rewards[i]) - mean) / (std + eps))
        elif name == "drgrpo":
            out.append(float(rewards[i]) - mean)
        else:
            out.append(float(rewards[i]) - (sum(members) - float(rewards[i])) / (n - 1))
    return torch.tensor(out)


@pytest.mark.parametrize("name", ["grpo", "drgrpo", "rloo"])
@pytest.mark.parametrize("seed", SEEDS)
def test_advantages_match_loop(name, seed):
    g = torch.Generator().manual_seed(seed)
    n = 40
    rewards = (torch.rand(n, generator=g) > 0.5).float() * torch.rand(n, generator=g)
    group = torch.randint(0, 9, (n,), generator=g)
    torch.testing.assert_close(compute_advantages(name, rewards, group), loop_advantages(name, rewards, group),
                               atol=1e-5, rtol=1e-5)


def test_advantage_hand_cases():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 5.0])
    grp = torch.tensor([0, 0, 0, 0, 1, 2])
    a = compute_advantages("grpo", r, grp)
    # group 0: mean .25, std sqrt(.25) = .5 (unbiased over 4: var = 0.75/3)
    assert a[0].item() == pytest.approx(0.75 / (0.5 + 1e-6), rel=1e-5)
    assert a[4].item() == 0.0 and a[5].item() == 0.0, "a group of one gets zero"
    assert compute_advantages("drgrpo", r, grp)[1].item() == pytest.approx(-0.25)
    assert compute_advantages("rloo", r, grp)[0].item() == pytest.approx(1.0)
    allsame = compute_advantages("grpo", torch.ones(4), torch.zeros(4, dtype=torch.long))
    assert torch.equal(allsame, torch.zeros(4))
    with pytest.raises(RegistryError, match="grpo"):
        compute_advantages("gpro", r, grp)
    assert set(ADVANTAGES.names()) == {"grpo", "drgrpo", "rloo"}


# ---- aggregation -------------------------------------------------------------------------------------
def loop_agg(lm, m, mode, max_len=None):
    b, length = lm.shape
    if mode == "token-mean":
        return sum(lm[i, t] * m[i, t] for i in range(b) for t in range(length)) / m.sum()
    if mode == "seq-mean-token-sum":
        return sum(sum(lm[i, t] * m[i, t] for t in range(length)) for i in range(b)) / b
    if mode == "seq-mean-token-mean":
        return sum(sum(lm[i, t] * m[i, t] for t in range(length)) / max(m[i].sum(), 1) for i in range(b)) / b
    return sum(lm[i, t] * m[i, t] for i in range(b) for t in range(length)) / (b * (max_len or length))


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                  "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("shape", SHAPES)
def test_aggregation_matches_loop(mode, shape):
    g = torch.Generator().manual_seed(3)
    lm = torch.randn(*shape, generator=g)
    m = (torch.rand(*shape, generator=g) > 0.3).float()
    torch.testing.assert_close(agg_loss(lm, m, mode), torch.as_tensor(loop_agg(lm, m, mode)).float())
    with pytest.raises(ValueError, match="token-mean"):
        agg_loss(lm, m, "mean")


# ---- PPO clip ----------------------------------------------------------------------------------------
def loop_ppo(logp, old, adv, mask, eps_low, eps_high, c):
    b, length = logp.shape
    out = torch.zeros(b, length)
    for i in range(b):
        for t in range(length):
            r = math.exp(float(logp[i, t] - old[i, t]))
            a = float(adv[i])
            loss = max(-a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high))
            if c is not None and a < 0:
                loss = min(loss, -a * c)
            out[i, t] = loss
    return loop_agg(out, mask, "token-mean")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("clip", [(0.2, 0.2, None), (0.2, 0.28, 3.0), (0.1, 0.5, 1.5)])
def test_ppo_clip_matches_loop(seed, shape, clip):
    logp, old, adv, mask = rand_batch(seed, *shape)
    eps_low, eps_high, c = clip
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(logp, old, adv * 3, mask, eps_low=eps_low, eps_high=eps_high,
                                                  dual_clip_c=c)
    ref = loop_ppo(logp.detach(), old, adv * 3, mask, eps_low, eps_high, c)
    torch.testing.assert_close(loss.detach(), torch.as_tensor(ref).float(), atol=1e-5, rtol=1e-5)
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert 0 <= metrics["actor/clip_frac"] <= 1


def test_ppo_clip_hand_case_and_gradient_zero_when_clipped():
    logp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_()  # ratios 1.5 and 0.5 against old = 0
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    loss, m = POLICY_LOSSES.get("ppo_clip")(logp, old, torch.tensor([1.0]), mask, eps_low=0.2, eps_high=0.28,
                                            dual_clip_c=None)
    # A > 0: token 0 clipped at 1.28 (no grad), token 1 unclipped (-0.5)
    assert loss.item() == pytest.approx((-1.28 - 0.5) / 2)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] != 0
    assert m["actor/clip_frac"].item() == pytest.approx(0.5)
    # dual clip: A < 0 with ratio 10 is bounded at c * |A| = 3
    lp = torch.log(torch.tensor([[10.0]]))
    loss, _ = POLICY_LOSSES.get("ppo_clip")(lp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1),
                                          dual_clip_c=3.0)
    assert loss.item() == pytest.approx(3.0)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                  "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("clip", [(0.2, 0.28, 3.0), (0.2, 0.2, None)])
def test_skipping_zero_advantage_rows_gives_the_same_loss_and_gradient(mode, clip):
    from vla_rl.algos.losses import informative_rows

    logp, old, adv, mask = rand_batch(3, 12, 9)
    adv = torch.where(torch.arange(12) % 3 == 0, torch.zeros(12), adv * 3)  # a third of the rows: all-equal groups
    eps_low, eps_high, c = clip
    loss_fn = POLICY_LOSSES.get("ppo_clip")
    full, _ = loss_fn(logp, old, adv, mask, eps_low=eps_low, eps_high=eps_high, dual_clip_c=c, agg_mode=mode)
    (g_full,) = torch.autograd.grad(full, logp)
    keep, factor = informative_rows(adv, mask, mode)
    assert keep.tolist() == (adv != 0).tolist() and 0 < factor < 1
    lp = logp.detach()[keep].requires_grad_()
    part, _ = loss_fn(lp, old[keep], adv[keep], mask[keep], eps_low=eps_low, eps_high=eps_high, dual_clip_c=c,
                      agg_mode=mode)
    part = part * factor
    (g_part,) = torch.autograd.grad(part, lp)
    torch.testing.assert_close(part, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_part, g_full[keep], atol=1e-7, rtol=1e-5)
    assert torch.all(g_full[~keep] == 0)  # what the skip relies on
    with pytest.raises(ValueError, match="one advantage per row"):
        informative_rows(adv[:, None].expand(12, 9), mask, mode)


# ---- Clip-Cov / KL-Cov -----------------------------------------------------------------------------
def loop_cov(logp, adv, mask):
    vals = [(i, t) for i in range(logp.shape[0]) for t in range(logp.shape[1]) if mask[i, t] > 0]
    ml = sum(float(logp[i, t]) for i, t in vals) / len(vals)
    ma = sum(float(adv[i]) for i, t in vals) / len(vals)
    return {(i, t): (float(logp[i, t]) - ml) * (float(adv[i]) - ma) for i, t in vals}


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_cov_matches_loop(seed):
    logp, old, adv, mask = rand_batch(seed, 20, 8)
    adv = adv * 4
    ratio_k = 0.05
    loss, m = POLICY_LOSSES.get("kl_cov")(logp, old, adv, mask, kl_cov_ratio=ratio_k, kl_cov_coef=2.0)
    logp = logp.detach()
    cov = loop_cov(logp, adv, mask)
    k = max(int(ratio_k * len(cov)), 1)
    top = set(sorted(cov, key=cov.get, reverse=True)[:k])
    total = 0.0
    for (i, t) in cov:
        r = math.exp(float(logp[i, t] - old[i, t]))
        total += -float(adv[i]) * r + (2.0 * abs(float(logp[i, t] - old[i, t])) if (i, t) in top else 0.0)
    assert loss.item() == pytest.approx(total / len(cov), rel=1e-5)
    assert m["actor/cov_penalised_frac"].item() == pytest.approx(k / len(cov))


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_cov_zeroes_the_gradient_of_chosen_tokens(seed):
    logp, old, adv, mask = rand_batch(seed, 30, 10)
    adv = adv * 5
    cov = loop_cov(logp.detach(), adv, mask)
    lb, ub, ratio = 0.5, 5.0, 0.02
    cands = {key for key, v in cov.items() if lb <= v <= ub}
    loss, m = POLICY_LOSSES.get("clip_cov")(logp, old, adv, mask, clip_cov_ratio=ratio, clip_cov_lb=lb,
                                            clip_cov_ub=ub, eps_low=10.0, eps_high=10.0,
                                            generator=torch.Generator().manual_seed(0))
    loss.backward()
    zero = {(i, t) for (i, t) in cov if logp.grad[i, t] == 0}
    k = min(max(int(ratio * len(cov)), 1), len(cands))
    assert len(zero) == k and zero <= cands
    assert m["actor/cov_clipped_frac"].item() == pytest.approx(k / len(cov))
    # the rest is the plain policy gradient (bounds wide open)
    total = sum(-float(adv[i]) * math.exp(float(logp[i, t] - old[i, t])) for (i, t) in cov if (i, t) not in zero)
    assert loss.item() == pytest.approx(total / len(cov), rel=1e-5)


# ---- NFT ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighting", ["none", "neg_rate", "sqrt"])
def test_nft_matches_loop(seed, weighting):
    logp, old, adv, mask = rand_batch(seed, 12, 6)
    g = torch.Generator().manual_seed(seed + 10)
    correct = torch.rand(12, generator=g) > 0.5
    acc = torch.rand(12, generator=g)
    loss, _ = POLICY_LOSSES.get("nft")(logp, old, adv, mask, correct=correct, group_accuracy=acc,
                                       prompt_weighting=weighting, neg_weight=0.7, agg_mode="token-mean")
    total, n = 0.0, 0
    for i in range(12):
        r = min(max(float(acc[i]), 0.02), 0.98)
        for t in range(6):
            if mask[i, t] == 0:
                continue
            ratio = math.exp(min(float(logp[i, t] - old[i, t]), 10.0))
            if correct[i]:
                v = -math.log(max(ratio, 0.1))
            else:
                v = 0.7 * -math.log(max((1 - r * ratio) / (1 - r), 0.1))
            w = {"none": 1.0, "neg_rate": 1 - r, "sqrt": math.sqrt((1 - r) / r)}[weighting]
            total += v * w
            n += 1
    assert loss.item() == pytest.approx(total / n, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logp.grad).all()


def test_nft_on_policy_gradient_pushes_correct_up_and_wrong_down():
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    loss, _ = POLICY_LOSSES.get("nft")(logp, logp.detach(), torch.zeros(2), torch.ones(2, 3),
                                       correct=torch.tensor([True, False]), group_accuracy=torch.tensor([0.5, 0.5]))
    loss.backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()  # descent raises correct, lowers wrong


# ---- LUFFY ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_luffy_matches_loop(seed):
    logp, old, adv, mask = rand_batch(seed, 10, 7)
    off = torch.arange(10) % 3 == 0
    loss, m = POLICY_LOSSES.get("luffy")(logp, old, adv, mask, off_policy=off, gamma=0.1, eps_low=0.2,
                                         eps_high=0.28)
    total, n = 0.0, 0
    for i in range(10):
        for t in range(7):
            if mask[i, t] == 0:
                continue
            a = float(adv[i])
            if off[i]:
                p = math.exp(float(logp[i, t]))
                total += -a * p / (p + 0.1)
            else:
                r = math.exp(float(logp[i, t] - old[i, t]))
                total += max(-a * r, -a * min(max(r, 0.8), 1.28))
            n += 1
    assert loss.item() == pytest.approx(total / n, rel=1e-5)
    assert 0 < m["actor/off_policy_frac"] < 1


# ---- KL --------------------------------------------------------------------------------------------------
def test_kl_estimators_match_formulas_and_k3_properties():
    g = torch.Generator().manual_seed(0)
    logp, ref = -torch.rand(50, generator=g) * 2, -torch.rand(50, generator=g) * 2  # k3 < 10: unclamped
    for i in range(50):
        d = float(logp[i] - ref[i])
        assert kl_penalty(logp, ref, "k1")[i].item() == pytest.approx(d, abs=1e-6)
        assert kl_penalty(logp, ref, "k2")[i].item() == pytest.approx(0.5 * d * d, abs=1e-6)
        assert kl_penalty(logp, ref, "k3")[i].item() == pytest.approx(math.exp(-d) + d - 1, rel=1e-4, abs=1e-6)
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    assert kl_penalty(torch.tensor([0.0]), torch.tensor([100.0]), "k3").item() == 10.0  # clamped
    # k1 and k3 are unbiased estimates of KL(p || ref) under samples from p
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    exact = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        est = kl_penalty(p.log()[x], q.log()[x], kind).mean().item()
        assert est == pytest.approx(exact, abs=0.01), kind


# ---- sampling and rewards --------------------------------------------------------------------------------
def test_dynamic_sampling_keeps_mixed_groups_only():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.5])
    g = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    assert informative_groups(r, g).tolist() == [False, False, False, False, True, True, False]
    g2 = torch.Generator().manual_seed(0)
    r2 = (torch.rand(60, generator=g2) > 0.5).float()
    grp = torch.randint(0, 12, (60,), generator=g2)
    keep = informative_groups(r2, grp)
    for i in range(60):
        vals = {float(r2[j]) for j in range(60) if grp[j] == grp[i]}
        assert bool(keep[i]) == (len(vals) > 1)


def test_luffy_group_mixing():
    idx, groups = mix_off_policy(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 0, 0, 7]), n_off_per_group=1)
    assert idx.tolist() == [0, 1] and groups.tolist() == [0, 0, 1, 1, 1, 0]


def test_majority_vote_and_overlong():
    rewards, info = majority_vote_rewards(["4", "4", "5", None, "x", "x", "y"], [0, 0, 0, 0, 1, 1, 1])
    assert rewards.tolist() == [1, 1, 0, 0, 1, 1, 0]
    assert info[0] == {"label": "4", "majority_ratio": 0.5} and info[1]["label"] == "x"
    pen = overlong_penalty(torch.tensor([10, 90, 95, 100, 120]), max_len=100, buffer=20)
    torch.testing.assert_close(pen, torch.tensor([0.0, -0.5, -0.75, -1.0, -1.0]))


def test_unknown_loss_lists_registered():
    with pytest.raises(RegistryError) as e:
        POLICY_LOSSES.get("grpo_plus")
    for name in ("ppo_clip", "clip_cov", "kl_cov", "nft", "luffy"):
        assert name in str(e.value)


def test_equal_trajectory_weight_gives_every_trajectory_the_same_total_weight():
    from vla_rl.algos.advantages import sample_advantages

    adv_traj = torch.tensor([1.0, -1.0, 0.5])
    traj = torch.tensor([0, 1, 1, 1, 1, 2, 2, 0])  # lengths 2, 4, 2 (mean 8/3)
    plain = sample_advantages(adv_traj, traj)
    assert plain.tolist() == [1.0, -1.0, -1.0, -1.0, -1.0, 0.5, 0.5, 1.0]
    eq = sample_advantages(adv_traj, traj, equal_trajectory_weight=True)
    for k in range(3):  # loop reference: total |weight| of each trajectory = mean length * |advantage|
        total = sum(float(eq[i]) for i in range(len(traj)) if traj[i] == k)
        assert total == pytest.approx(8 / 3 * float(adv_traj[k]))


# ---- one signature for every loss -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["ppo_clip", "clip_cov", "kl_cov", "nft", "luffy"])
def test_a_loss_refuses_an_unknown_option(name):
    logp, old, adv, mask = rand_batch(0, 4, 3)
    extra = {"correct": torch.ones(4, dtype=torch.bool), "group_accuracy": torch.full((4,), 0.5),
             "off_policy": torch.zeros(4, dtype=torch.bool), "generator": torch.Generator().manual_seed(0)}
    POLICY_LOSSES.get(name)(logp, old, adv, mask, agg_mode="token-mean", **extra)  # every shared input accepted
    with pytest.raises(TypeError, match="eps_hihg"):
        POLICY_LOSSES.get(name)(logp, old, adv, mask, eps_hihg=0.3, **extra)


def test_loss_options_come_from_the_signature_and_are_checked():
    from vla_rl.algos.losses import check_loss_options, loss_options

    assert set(loss_options("ppo_clip").model_fields) == {"eps_low", "eps_high", "dual_clip_c", "max_len"}
    assert loss_options("ppo_clip")().eps_high == 0.28  # the defaults are the loss's own
    check_loss_options("nft", {"prompt_weighting": "sqrt", "neg_weight": 0.5})
    with pytest.raises(ValueError, match="'kl_cov' has no option 'eps_low'.*kl_cov_ratio"):
        check_loss_options("kl_cov", {"eps_low": 0.2})
    with pytest.raises(ValueError, match="prompt_weighting"):
        check_loss_options("nft", {"prompt_weighting": "cubic"})


def test_registering_a_loss_with_a_catch_all_is_refused():
    from vla_rl.algos.losses import register_policy_loss

    def sloppy(logp, old_logp, advantages, mask, *, agg_mode="token-mean", max_len=None, correct=None,
               group_accuracy=None, off_policy=None, generator=None, eps=0.2, **_):
        raise AssertionError

    with pytest.raises(TypeError, match="signature"):
        register_policy_loss("sloppy")(sloppy)
    assert "sloppy" not in POLICY_LOSSES
