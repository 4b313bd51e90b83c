"""The GRPO trainer end to end on a micro policy: it runs, logs, checkpoints, resumes identically,
and survives bad updates."""

import json
import time
from types import SimpleNamespace

import pytest
import torch

from vla_rl.config import ConfigError, load_config
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer, NonFiniteUpdates


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory, tiny_vla):
    path = tmp_path_factory.mktemp("init") / "ckpt"
    tiny_vla.save_pretrained(path)
    return path


def cfg_for(init, out, **kw) -> GRPOConfig:
    base = dict(tasks=["mujoco/Reach-v1"], init=str(init), out=str(out), iterations=2, threads=1,
                sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.0},
                optim={"epochs": 1, "minibatch_size": 16, "lr": 1e-3}, eval={"every": 2, "episodes": 2},
                checkpoint={"every": 1}, env={"num_envs": 4})
    for k, v in kw.items():  # a group given here changes only the keys it names
        base[k] = base[k] | v if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return GRPOConfig.model_validate(base)


def params(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_grpo_runs_logs_and_checkpoints(init_ckpt, tmp_path):
    tasks = ["mujoco/Reach-v1", "mujoco/PushCube-v1"]
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "run", tasks=tasks, threads=2, iterations=3,
                            rollout={"noise_correlation": 0.9, "anchors": 1, "pipelined": True}))
    try:
        s = t.train()
    finally:
        t.close()
    assert s["iterations"] == 3 and s["env_steps"] > 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["eval/success" in r for r in rows] == [False, True, True]  # every 2nd iteration and the last
    assert {"rollout/success", "perf/env_steps_per_s", "eval/success", "rollout/policy_entropy",
            "actor/zero_advantage_frac"} <= set(rows[-1])
    assert {f"rollout/{task}/success" for task in tasks} <= set(rows[-1])  # per task when several are mixed
    assert "rollout/anchor_success" in rows[-1]  # the greedy rollouts' success on the training seeds
    assert torch.get_num_threads() == 2  # the pipelined rollout's one thread was given back for the update
    assert (tmp_path / "run" / "state" / "trainer.pt").is_file() and (tmp_path / "run" / "last").is_dir()
    assert VLAPolicy.from_pretrained(tmp_path / "run" / "last").config.chunk_size == 4
    with pytest.raises(ValueError, match="anchors .2. must be below sampling.group_size .2."):
        cfg_for(init_ckpt, tmp_path / "x", rollout={"anchors": 2})


def test_time_budget_stops_after_a_validated_iteration(init_ckpt, tmp_path):
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "budget", iterations=3, max_wall_s=1e-3))
    try:
        s = t.train()
    finally:
        t.close()
    assert s["iterations"] == 1 and s["stopped_by_time"]  # the first iteration always runs
    rows = [json.loads(x) for x in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and "eval/success" in rows[0] and rows[0]["perf/stopped_by_time"] == 1.0
    assert (tmp_path / "budget" / "best").is_dir() and (tmp_path / "budget" / "state" / "trainer.pt").is_file()


def test_next_fits_by_hand():
    def fits(elapsed, validate_now, eval_s=5.0, budget=100.0):
        me = SimpleNamespace(cfg=SimpleNamespace(max_wall_s=budget, eval=SimpleNamespace(episodes=4)),
                             durations=[10.0, 20.0, 12.0], eval_s=eval_s)
        return GRPOTrainer.next_fits(me, elapsed, validate_now)

    assert fits(60, False)  # 60 + 20 (the longest of the last three) + 5 (its validation) = 85
    assert fits(75, False) and not fits(75, True)  # 100 fits exactly; a validation now makes it 105
    assert fits(55, False, eval_s=None) and not fits(55, True, eval_s=None)  # no validation yet: one iteration's
    assert fits(1e9, True, budget=None)


def test_budget_clock_sets_the_lr_from_the_seconds_spent(init_ckpt, tmp_path):
    lrs = {}
    for clock in ("iterations", "budget"):
        t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / clock, iterations=40, max_wall_s=1000.0, eval={"episodes": 0},
                                optim={"lr_schedule": "cosine", "min_lr_ratio": 0.1, "lr_clock": clock}))
        try:
            r = t.rollout()
            t.t_start = time.time() - 500.0  # half of the budget spent at the first iteration
            lrs[clock] = t.update(r)["actor/lr"]
        finally:
            t.close()
    assert lrs["iterations"] == pytest.approx(1e-3)
    assert lrs["budget"] == pytest.approx(0.55e-3, rel=1e-2)  # the cosine half-way down: (1 + 0.1) / 2


def test_update_makes_successful_actions_likelier(init_ckpt, tmp_path):
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "upd", optim={"epochs": 4, "lr": 3e-3}, eval={"episodes": 0}))
    try:
        r = t.rollout()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0  # mixed outcomes within every group
        idx = torch.arange(r.num_samples)
        win = r.success[r.traj]

        def mean_logp(mask):
            with torch.no_grad():
                lp, _ = t.policy.logprobs(r.batch(idx), r.tokens, t.cfg.sampling.temperature)
            return float((lp * r.token_mask)[mask].sum() / r.token_mask[mask].sum())

        w0, l0 = mean_logp(win), mean_logp(~win)
        t.update(r)
        w1, l1 = mean_logp(win), mean_logp(~win)
    finally:
        t.close()
    assert w1 > w0 and l1 < l0, (w0, w1, l0, l1)


def test_resume_matches_an_uninterrupted_run(init_ckpt, tmp_path):
    full = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "full", iterations=3, eval={"episodes": 0}))
    try:
        full.train()
    finally:
        full.close()
    part = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", iterations=2, eval={"episodes": 0}))
    try:
        part.train()
    finally:
        part.close()
    # never mixed into its metrics
    with pytest.raises(ValueError, match="already holds a run .*pass checkpoint.resume=true"):
        GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", iterations=3, eval={"episodes": 0}))
    resumed = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", iterations=3, eval={"episodes": 0},
                                  checkpoint={"resume": True}))
    try:
        assert resumed.iteration == 2
        resumed.train()
    finally:
        resumed.close()
    torch.testing.assert_close(params(resumed.policy), params(full.policy), rtol=0, atol=0)
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3]
    fresh = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", eval={"episodes": 0},
                                checkpoint={"overwrite": True}))  # deletes the run
    fresh.close()
    assert fresh.iteration == 0 and not (tmp_path / "part" / "last").exists()
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        cfg_for(init_ckpt, tmp_path / "part", checkpoint={"resume": True, "overwrite": True})


def test_ema_follows_the_online_policy_by_hand_and_is_what_is_kept(init_ckpt, tmp_path):
    """``ema``: after each iteration's update, average <- decay * average + (1 - decay) * online; validation,
    best/ and last/ use the average; the rollouts and the update the online policy."""
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "ema", optim={"ema": 0.75, "lr": 3e-3}, eval={"every": 2},
                            iterations=2))
    try:
        p0 = params(t.policy).clone()
        torch.testing.assert_close(params(t.ema), p0, rtol=0, atol=0)  # it starts at the initial policy
        avg = p0
        for _ in range(2):
            r = t.rollout()
            r.success[:] = torch.arange(len(r.success)) % 2 == 0  # mixed outcomes: the policy moves
            t.step(r, 0.0)
            avg = 0.75 * avg + 0.25 * params(t.policy)
            torch.testing.assert_close(params(t.ema), avg)
        assert (params(t.policy) - avg).abs().max() > 1e-4  # the online policy was not replaced by the average
        t.finish()
    finally:
        t.close()
    for kept in ("best", "last"):  # validated at iteration 2, the last
        torch.testing.assert_close(params(VLAPolicy.from_pretrained(tmp_path / "ema" / kept)), params(t.ema),
                                   rtol=0, atol=0)


def test_resume_restores_the_weight_average(init_ckpt, tmp_path):
    full = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "full", iterations=3, optim={"ema": 0.5}, eval={"episodes": 0}))
    try:
        full.train()
    finally:
        full.close()
    part = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", iterations=2, optim={"ema": 0.5}, eval={"episodes": 0}))
    try:
        part.train()
    finally:
        part.close()
    resumed = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", iterations=3, optim={"ema": 0.5}, eval={"episodes": 0},
                                  checkpoint={"resume": True}))
    try:
        torch.testing.assert_close(params(resumed.ema), params(part.ema), rtol=0, atol=0)  # not the initial one
        resumed.train()
    finally:
        resumed.close()
    torch.testing.assert_close(params(resumed.ema), params(full.ema), rtol=0, atol=0)
    torch.testing.assert_close(params(resumed.policy), params(full.policy), rtol=0, atol=0)


def test_non_finite_updates_are_skipped_then_stop(init_ckpt, tmp_path, monkeypatch):
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "nan", optim={"nan_patience": 2}, eval={"episodes": 0}))
    try:
        r = t.rollout()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0  # mixed outcomes: non-zero advantages
        r.old_logp[:] = float("nan")
        before = params(t.policy).clone()
        with pytest.warns(UserWarning, match="non-finite"), pytest.raises(NonFiniteUpdates, match="2 consecutive"):
            t.update(r)
        assert t.nan_skipped == 2
        torch.testing.assert_close(params(t.policy), before, rtol=0, atol=0)  # nothing was applied
    finally:
        t.close()


def test_unknown_loss_lists_the_registered_ones(init_ckpt, tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(GRPOConfig, None, ["tasks=[mujoco/Reach-v1]", f"init={init_ckpt}", "loss.name=ppo_clipp"])
    assert "ppo_clip" in str(e.value) and "clip_cov" in str(e.value) and "nft" in str(e.value)


def test_frozen_modules_stay_fixed(init_ckpt, tmp_path):
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "frz", optim={"lr": 3e-3, "freeze": ["vision"]},
                            eval={"episodes": 0}))
    try:
        r = t.rollout()
        vision0 = params(t.policy.vision).clone()
        lm0 = params(t.policy.lm).clone()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0
        t.update(r)
        assert not torch.equal(params(t.policy.lm), lm0)
        torch.testing.assert_close(params(t.policy.vision), vision0, rtol=0, atol=0)
    finally:
        t.close()
    with pytest.raises(ValueError, match="no parameter under 'visoin'.*vision"):
        GRPOTrainer(cfg_for(init_ckpt, tmp_path / "typo", optim={"freeze": ["visoin"]}))


def test_receding_horizon_from_the_config_reaches_rollouts(init_ckpt, tmp_path):
    """``n_action_steps`` overrides the init checkpoint's: 2 of each 4-step chunk executed, only they credited."""
    t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "h2", eval={"episodes": 0}, rollout={"n_action_steps": 2}))
    try:
        assert t.policy.config.n_action_steps == 2
        r = t.rollout()
        per_step = r.token_mask.view(r.num_samples, 4, 7).sum(0)
        assert (per_step[2:] == 0).all() and per_step[0].sum() > 0
    finally:
        t.close()
    with pytest.raises(ValueError, match="n_action_steps 5 exceeds chunk_size 4"):
        GRPOTrainer(cfg_for(init_ckpt, tmp_path / "h5", rollout={"n_action_steps": 5}))


def test_skipping_all_equal_groups_takes_the_same_steps(init_ckpt, tmp_path):
    """The update skips the forward and backward of samples with a zero advantage; the parameters it ends with
    are those of an update that computes every sample (to float rounding), and the Adam state too."""
    ends = {}
    for skip in (False, True):
        t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / f"skip{skip}", sampling={"seeds_per_iter": 4},
                                optim={"epochs": 2, "minibatch_size": 8, "lr": 3e-3}, eval={"episodes": 0}))
        t.skip_zero_advantage = skip
        try:
            r = t.rollout()  # the same rollouts for both: same seed, same initial policy
            r.success[:] = (r.group % 2 == 0) & (torch.arange(len(r.group)) % 2 == 0)  # odd groups all failed
            m = t.update(r)
            ends[skip] = (params(t.policy), m)
        finally:
            t.close()
    (p_skip, m_skip), (p_all, m_all) = ends[True], ends[False]
    assert 0.2 < m_skip["actor/zero_advantage_frac"] < 0.8 and m_skip["actor/updates"] == m_all["actor/updates"]
    # the loss is rescaled to the whole minibatch's (Adam alone would hide a wrong scale), the gradients match
    assert m_skip["loss/pg"] == pytest.approx(m_all["loss/pg"], rel=1e-5, abs=1e-7)
    assert m_skip["actor/grad_norm"] == pytest.approx(m_all["actor/grad_norm"], rel=1e-5)
    # Adam divides by sqrt(v): parameters whose gradients are at rounding level move by up to ~lr / 100 apart
    torch.testing.assert_close(p_skip, p_all, atol=3e-5, rtol=1e-5)
    assert (p_skip - params(VLAPolicy.from_pretrained(init_ckpt))).abs().max() > 1e-3


@pytest.mark.parametrize("agg_mode, kl_coef", [("token-mean", 0.0), ("seq-mean-token-mean", 0.1)])
def test_micro_batches_take_the_minibatch_step(init_ckpt, tmp_path, agg_mode, kl_coef):
    """A minibatch forwarded in micro-batches (gradients summed) ends at the parameters, loss, gradient norm and
    token-mean metrics of one forward of it, under both kinds of aggregation and with the KL term."""
    ends = {}
    for micro in (None, 3):
        t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / f"micro{micro}{agg_mode}", sampling={"seeds_per_iter": 4},
                                loss={"agg_mode": agg_mode, "kl_coef": kl_coef},
                                optim={"epochs": 2, "minibatch_size": 10, "micro_batch_size": micro, "lr": 3e-3},
                                eval={"episodes": 0}))
        try:
            r = t.rollout()  # the same rollouts for both: same seed, same initial policy
            r.success[:] = torch.arange(len(r.success)) % 3 == 0
            m = t.update(r)
            ends[micro] = (params(t.policy), m, r.num_samples)
        finally:
            t.close()
    (p_whole, m_whole, n), (p_micro, m_micro, _) = ends[None], ends[3]
    assert n > 10 and m_micro["actor/updates"] == m_whole["actor/updates"]  # minibatches of 10 in parts of 3, 3, 3, 1
    for key in ("loss/pg", "actor/grad_norm", "actor/entropy", "actor/ppo_kl"):
        assert m_micro[key] == pytest.approx(m_whole[key], rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(p_micro, p_whole, atol=3e-5, rtol=1e-5)
    assert (p_micro - params(VLAPolicy.from_pretrained(init_ckpt))).abs().max() > 1e-3


def test_micro_batches_refuse_what_would_not_add_up(init_ckpt, tmp_path):
    with pytest.raises(ValueError, match="clip_cov loss takes statistics of the whole minibatch"):
        cfg_for(init_ckpt, tmp_path / "m", loss={"name": "clip_cov"}, optim={"micro_batch_size": 4})
    with pytest.raises(ValueError, match="micro_batch_size with optim.target_kl"):
        cfg_for(init_ckpt, tmp_path / "m", optim={"micro_batch_size": 4, "target_kl": 0.05})
    with pytest.raises(ValueError, match="micro_batch_size with distributed.learner_ranks > 1"):
        cfg_for(init_ckpt, tmp_path / "m", optim={"micro_batch_size": 4},
                distributed={"backend": "ray", "learner_ranks": 2})


def mean_logp_of(t, r, rows) -> float:
    """Mean log-prob of the valid tokens of samples ``rows`` (bool (S,)) under the trainer's policy."""
    with torch.no_grad():
        lp, _ = t.policy.logprobs(r.batch(torch.arange(r.num_samples)), r.tokens, t.cfg.sampling.temperature)
    return float((lp * r.token_mask)[rows].sum() / r.token_mask[rows].sum())


def test_negative_scale_damps_the_push_down_on_failed_episodes(init_ckpt, tmp_path):
    change = {}
    for scale in (1.0, 0.0):
        t = GRPOTrainer(cfg_for(init_ckpt, tmp_path / f"neg{scale}", loss={"negative_scale": scale},
                                optim={"epochs": 2, "lr": 3e-3}, eval={"episodes": 0}))
        try:
            r = t.rollout()  # the same rollouts for both: same seed, same initial policy
            r.success[:] = torch.arange(len(r.success)) % 2 == 0
            lose = ~r.success[r.traj]
            before = mean_logp_of(t, r, lose)
            t.update(r)
            change[scale] = mean_logp_of(t, r, lose) - before
        finally:
            t.close()
    assert change[1.0] < 0 and change[0.0] > change[1.0], change


def test_lr_schedule_warms_up_then_holds_or_decays():
    from vla_rl.trainers.schedule import lr_factor

    const = [lr_factor(i, 10, 3) for i in range(10)]
    assert const == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1, 1, 1, 1, 1])
    cos = [lr_factor(i, 10, 3, "cosine", 0.1) for i in range(10)]
    assert cos[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])  # the decay starts after the warmup
    assert cos[6] == pytest.approx(0.55) and cos[9] == pytest.approx(0.1)  # half-way: the mean of 1 and 0.1
    assert all(a >= b for a, b in zip(cos[3:], cos[4:], strict=False))
    assert lr_factor(0, 1, 0, "cosine", 0.1) == 1.0  # a one-iteration run takes the full lr


def test_lr_schedule_decays_over_its_last_fraction_and_follows_a_budget_clock():
    from vla_rl.trainers.schedule import lr_factor

    # warmup-stable-decay: 3 warmup iterations, then progress (i - 3) / 8; the last 0.25 of it decays
    wsd = [lr_factor(i, 12, 3, "cosine", 0.1, decay_fraction=0.25) for i in range(12)]
    assert wsd[3:10] == pytest.approx([1.0] * 7)  # progress 0 .. 0.75: the full lr
    assert wsd[10] == pytest.approx(0.55) and wsd[11] == pytest.approx(0.1)  # 0.875: half-way down the decay
    full = [lr_factor(i, 12, 3, "cosine", 0.1) for i in range(12)]
    assert all(w >= f for w, f in zip(wsd, full, strict=True))
    # a clock ahead of the iterations moves the decay forward; one behind them changes nothing
    assert lr_factor(4, 12, 3, "cosine", 0.1, progress=0.5) == pytest.approx(0.55)
    assert lr_factor(4, 12, 3, "cosine", 0.1, progress=0.0) == pytest.approx(full[4])
    assert lr_factor(4, 12, 3, "cosine", 0.1, 0.25, progress=2.0) == pytest.approx(0.1)  # past the budget
    assert lr_factor(1, 12, 3, "cosine", 0.1, progress=0.9) == pytest.approx(2 / 3)  # the warmup first
    assert lr_factor(5, 12, 3, "constant", progress=0.9) == 1.0


def test_a_misspelt_loss_option_is_refused_at_load_naming_the_valid_ones(init_ckpt):
    with pytest.raises(ConfigError) as e:
        load_config(GRPOConfig, None, ["tasks=[mujoco/Reach-v1]", f"init={init_ckpt}", "loss.name=ppo_clip",
                                       "loss.kwargs={eps_hihg: 0.3}"])
    assert "eps_hihg" in str(e.value) and "eps_high" in str(e.value) and "eps_low" in str(e.value)
    assert "ppo_clip" in str(e.value)


def test_the_trainer_contracts_refuse_what_lacks_a_required_method(init_ckpt, tmp_path):
    from dataclasses import dataclass

    from vla_rl.policies.base import Policy
    from vla_rl.rollout.base import Rollout, per_trajectory
    from vla_rl.trainers.backend import Backend
    from vla_rl.trainers.grpo import RobotBackend
    from vla_rl.trainers.text_grpo import TextBackend

    class NoScores(Policy):  # no logprobs
        @classmethod
        def from_pretrained(cls, path):
            return cls()

        def save_pretrained(self, path, extra=None):
            return path

    with pytest.raises(TypeError, match="logprobs"):
        NoScores()
    assert isinstance(VLAPolicy.from_pretrained(init_ckpt), Policy)

    @dataclass
    class NoBatch(Rollout):  # no batch(idx)
        group: torch.Tensor = per_trajectory()

        def counts(self):
            return {}

    with pytest.raises(TypeError, match="batch"):
        NoBatch(torch.zeros(1))
    assert NoBatch.off_policy is None and NoBatch.anchor is None  # the defaults a modality without them reads

    class NoMetrics:
        def load_policy(self, path): ...
        def start(self, policy): ...
        def rollout(self, policy, task, seeds, generator, group_offset): ...
        def evaluate(self, policy, split, episodes): ...
        def close(self): ...

    assert not isinstance(NoMetrics(), Backend) and not issubclass(NoMetrics, Backend)
    assert isinstance(RobotBackend(cfg_for(init_ckpt, tmp_path / "b")), Backend)
    assert issubclass(RobotBackend, Backend) and issubclass(TextBackend, Backend)
