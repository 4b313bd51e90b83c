"""Policy losses, KL estimators and loss aggregation: pure tensor functions returning (loss, metrics).

Shapes: ``logp``, ``old_logp``, ``mask`` are (B, L) over response tokens (an action chunk or a text
answer); ``advantages`` is (B,) (one per sample, broadcast over its tokens) or (B, L). Metrics are
detached 0-d tensors (no ``.item()`` here: the trainer syncs once per step).
Every loss is checked against a plain-loop reference in ``tests/vla_rl/algos``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from vla_rl.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss")
KL_ESTIMATORS: Registry = Registry("KL estimator")
AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

Metrics = dict[str, torch.Tensor]


# ---- the one signature of a policy loss ----------------------------------------------------------------
class PolicyLoss(Protocol):
    """What every registered policy loss is: the shared inputs, then its own keyword-only options (declared in
    its signature, with defaults; no catch-all, so a misspelt option is a TypeError). ``correct`` bool (B,),
    ``group_accuracy`` float (B,), ``off_policy`` bool (B,) and ``generator`` are the per-sample extras the
    trainer supplies to every loss; a loss that needs one refuses None."""

    def __call__(self, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                 agg_mode: str = ..., max_len: int | None = None, correct: torch.Tensor | None = None,
                 group_accuracy: torch.Tensor | None = None, off_policy: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, **options: Any) -> tuple[torch.Tensor, Metrics]: ...


POSITIONAL_INPUTS = ("logp", "old_logp", "advantages", "mask")
SUPPLIED_INPUTS = ("agg_mode", "correct", "group_accuracy", "off_policy", "generator")  # by the trainer
SHARED_INPUTS = (*SUPPLIED_INPUTS[:1], "max_len", *SUPPLIED_INPUTS[1:])  # keyword-only, in this order


def register_policy_loss(name: str) -> Callable[[Callable], Callable]:
    """Register a policy loss after checking it has the one signature (`PolicyLoss`): the positional inputs,
    then the shared keyword-only inputs in order, then its options, each with a default, and no ``**``."""

    def decorator(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())
        pos = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        kw = [p for p in params if p.kind is p.KEYWORD_ONLY]
        bad = [p.name for p in params if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL, p.POSITIONAL_ONLY)]
        shared = tuple(p.name for p in kw[: len(SHARED_INPUTS)])
        no_default = [p.name for p in kw[len(SHARED_INPUTS):] if p.default is p.empty]
        if pos != POSITIONAL_INPUTS or shared != SHARED_INPUTS or bad or no_default:
            raise TypeError(f"policy loss {name!r}: the signature must be ({', '.join(POSITIONAL_INPUTS)}, *, "
                            f"{', '.join(SHARED_INPUTS)}, <options with defaults>) with no *args/**kwargs")
        return POLICY_LOSSES.register(name)(fn)  # type: ignore[return-value]

    return decorator


@cache
def loss_options(name: str) -> type[BaseModel]:
    """The options of policy loss ``name`` (its keyword-only parameters the trainer does not supply, ``max_len``
    included) as a frozen pydantic model, derived once from the loss's signature: field -> (type, default)."""
    fn = POLICY_LOSSES.get(name)
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {
        p.name: (hints[p.name], p.default) for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in SUPPLIED_INPUTS}
    cfg = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    return create_model(f"{name}_options", __config__=cfg, **fields)


def check_loss_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse options that policy loss ``name`` does not declare, or of the wrong type, naming the valid ones.

    Raises:
        ValueError: an unknown option or a bad value.
    """
    model = loss_options(name)
    valid = ", ".join(model.model_fields)
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        raise ValueError(f"policy loss {name!r} has no option {', '.join(map(repr, unknown))}; its options: {valid}")
    try:
        model.model_validate(dict(options))
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"policy loss {name!r}: {msgs} (its options: {valid})") from None


# ---- aggregation ----------------------------------------------------------------------------------
def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean",
             max_len: int | None = None) -> torch.Tensor:
    """Reduce a per-token loss (B, L) over the valid tokens ``mask`` (B, L) to a scalar.

    * ``token-mean``: every valid token weighs the same (DAPO's token-level loss).
    * ``seq-mean-token-sum``: sum over each sequence's tokens, mean over sequences.
    * ``seq-mean-token-mean``: mean within each sequence, then over sequences (the original GRPO).
    * ``seq-mean-token-sum-norm``: total sum / (B * max_len), a constant normaliser (Dr.GRPO);
      ``max_len`` defaults to L.
    """
    m = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        return (loss_mat * m).sum() / m.sum().clamp(min=1.0)
    if mode == "seq-mean-token-sum":
        return (loss_mat * m).sum(-1).mean()
    if mode == "seq-mean-token-mean":
        return ((loss_mat * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    if mode == "seq-mean-token-sum-norm":
        return (loss_mat * m).sum() / (loss_mat.shape[0] * (max_len or loss_mat.shape[-1]))
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(AGG_MODES)}")


def informative_rows(advantages: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean"
                     ) -> tuple[torch.Tensor, float]:
    """Rows (B,) bool whose advantage (B,) is nonzero, and the factor f with ``agg_loss`` over all rows =
    f x ``agg_loss`` over those rows, for a per-token loss that is zero with a zero gradient where the
    advantage is zero (PPO clip, with or without dual clip, and no KL term). The update then skips the forward
    and backward of the rest (a GRPO group whose rewards are all equal) and takes the same gradient step."""
    if advantages.dim() != 1:
        raise ValueError(f"informative_rows needs one advantage per row (B,), got shape {tuple(advantages.shape)}")
    keep = advantages != 0
    return keep, row_share(keep, mask, mode)


def row_share(rows: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> float:
    """The factor f with which ``agg_loss`` over the rows ``rows`` (bool (B,) or indices) of a per-token loss
    enters ``agg_loss`` over all B rows of ``mask`` (B, L), for a loss whose tokens depend on their own row only
    (`ROW_ADDITIVE`): the loss over all rows is then the sum over disjoint row sets of f x their own loss. The
    valid tokens' share for ``token-mean``, the rows' share for the sequence modes."""
    if mode == "token-mean":
        total = float(mask.sum())
        return float(mask[rows].sum()) / total if total else 0.0
    if mode in AGG_MODES:  # the sequence modes divide by the number of rows (and a constant length)
        picked = int(rows.sum()) if rows.dtype == torch.bool else len(rows)
        return picked / max(len(mask), 1)
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(AGG_MODES)}")


ZERO_ADVANTAGE_SKIPPABLE = ("ppo_clip",)  # losses whose tokens with a zero advantage add nothing (see above)
# Losses whose per-token terms depend on their own row only (no statistic of the whole minibatch, as clip_cov's and
# kl_cov's token picks are): a minibatch can be forwarded in parts, each weighted by its `row_share`.
ROW_ADDITIVE = ("ppo_clip", "nft", "luffy")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def _broadcast(adv: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return adv[:, None].expand_as(like) if adv.dim() == 1 else adv


# ---- KL ---------------------------------------------------------------------------------------------
@KL_ESTIMATORS.register("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log p - log p_ref (unbiased, high variance; Schulman, "Approximating KL divergence")."""
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = (log p - log p_ref)^2 / 2 (biased, low variance)."""
    return 0.5 * (logp - ref_logp) ** 2


@KL_ESTIMATORS.register("k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, clamp: float = 10.0) -> torch.Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 (unbiased, low variance, >= 0), clamped to [-clamp, clamp]
    as veRL's ``low_var_kl`` does against fp blow-ups."""
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-clamp, clamp)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate (B, L) of the current policy from the reference one."""
    return KL_ESTIMATORS.get(kind)(logp, ref_logp)


# ---- PPO clip (+ clip-higher, dual clip) -------------------------------------------------------
def _clipped_pg(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float,
                dual_clip_c: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO objective (as a loss), whether each token was clipped, and dual-clip hits."""
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(l1, l2)
    clipped = l2 > l1
    dual = torch.zeros_like(clipped)
    if dual_clip_c is not None:
        # Dual clip (Ye et al. 2020): for A < 0 bound the loss by -c * A so a huge ratio cannot dominate.
        l3 = -adv * dual_clip_c
        dual = (adv < 0) & (loss > l3)
        loss = torch.where(adv < 0, torch.minimum(loss, l3), loss)
    return loss, clipped, dual


def _ratio_metrics(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clipped: torch.Tensor,
                   dual: torch.Tensor) -> Metrics:
    return {"actor/clip_frac": masked_mean(clipped.float(), mask).detach(),
            "actor/dual_clip_frac": masked_mean(dual.float(), mask).detach(),
            "actor/ppo_kl": masked_mean(old_logp - logp, mask).detach()}


@register_policy_loss("ppo_clip")
def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                  agg_mode: str = "token-mean", max_len: int | None = None,
                  correct: torch.Tensor | None = None, group_accuracy: torch.Tensor | None = None,
                  off_policy: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  eps_low: float = 0.2, eps_high: float = 0.28,
                  dual_clip_c: float | None = 3.0) -> tuple[torch.Tensor, Metrics]:
    """PPO's clipped surrogate with asymmetric bounds ``[1 - eps_low, 1 + eps_high]`` (DAPO clip-higher:
    0.2 / 0.28 lets low-probability tokens grow, against entropy collapse) and dual clip ``c`` for A < 0.
    ``eps_high = eps_low`` and ``dual_clip_c=None`` give vanilla PPO/GRPO."""
    adv = _broadcast(advantages, logp)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    loss_mat, clipped, dual = _clipped_pg(ratio, adv, eps_low, eps_high, dual_clip_c)
    return agg_loss(loss_mat, mask, agg_mode, max_len), _ratio_metrics(logp, old_logp, mask, clipped, dual)


def token_covariance(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token centred product (logp - mean logp) * (A - mean A) over the valid tokens of the batch
    (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs", eq. for Cov(log pi, A)).
    Invalid tokens get -inf. (B, L) -> (B, L)."""
    adv = _broadcast(advantages, logp)
    lp = logp.detach()
    cov = (lp - masked_mean(lp, mask)) * (adv - masked_mean(adv, mask))
    return torch.where(mask.bool(), cov, torch.full_like(cov, -torch.inf))


@register_policy_loss("clip_cov")
def clip_cov_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                  agg_mode: str = "token-mean", max_len: int | None = None,
                  correct: torch.Tensor | None = None, group_accuracy: torch.Tensor | None = None,
                  off_policy: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  clip_cov_ratio: float = 2e-4, clip_cov_lb: float = 1.0, clip_cov_ub: float = 5.0,
                  eps_low: float = 0.2, eps_high: float = 0.28,
                  dual_clip_c: float | None = None) -> tuple[torch.Tensor, Metrics]:
    """Clip-Cov: among tokens whose covariance lies in ``[lb, ub]``, pick ``max(1, ratio * n_valid)`` at
    random and drop them from the gradient; the rest get the clipped PPO objective. The paper pairs it
    with wide ratio bounds; we keep ``eps_low/eps_high`` configurable (their reference code also keeps
    the standard clip), and pick at random from the candidates with ``generator`` for reproducibility."""
    adv = _broadcast(advantages, logp)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    loss_mat, clipped, dual = _clipped_pg(ratio, adv, eps_low, eps_high, dual_clip_c)
    cov = token_covariance(logp, adv, mask)
    n_valid = int(mask.sum())
    k = max(int(clip_cov_ratio * n_valid), 1)
    cand = torch.nonzero(((cov >= clip_cov_lb) & (cov <= clip_cov_ub)).flatten()).squeeze(-1)
    keep = torch.ones_like(loss_mat).flatten()
    if cand.numel():
        pick = cand[torch.randperm(cand.numel(), generator=generator)[: min(k, cand.numel())]]
        keep[pick] = 0.0
    keep = keep.view_as(loss_mat)
    metrics = _ratio_metrics(logp, old_logp, mask, clipped, dual)
    metrics["actor/cov_clipped_frac"] = masked_mean(1.0 - keep, mask).detach()
    return agg_loss(loss_mat * keep, mask, agg_mode, max_len), metrics


@register_policy_loss("kl_cov")
def kl_cov_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                agg_mode: str = "token-mean", max_len: int | None = None,
                correct: torch.Tensor | None = None, group_accuracy: torch.Tensor | None = None,
                off_policy: torch.Tensor | None = None, generator: torch.Generator | None = None,
                kl_cov_ratio: float = 2e-3, kl_cov_coef: float = 1.0) -> tuple[torch.Tensor, Metrics]:
    """KL-Cov: unclipped policy gradient ``-A * ratio`` plus ``coef * |logp - logp_old|`` on the top
    ``max(1, ratio * n_valid)`` tokens by covariance (the tokens driving entropy down)."""
    adv = _broadcast(advantages, logp)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    loss_mat = -adv * ratio
    cov = token_covariance(logp, adv, mask).flatten()
    k = min(max(int(kl_cov_ratio * int(mask.sum())), 1), int(mask.sum()))
    sel = torch.zeros_like(cov, dtype=torch.bool)
    if k > 0:
        sel[torch.topk(cov, k).indices] = True
    sel = sel.view_as(loss_mat)
    loss_mat = loss_mat + kl_cov_coef * sel * (logp - old_logp).abs()
    metrics = {"actor/ppo_kl": masked_mean(old_logp - logp, mask).detach(),
               "actor/cov_penalised_frac": masked_mean(sel.float(), mask).detach()}
    return agg_loss(loss_mat, mask, agg_mode, max_len), metrics


def _clamp_keep_grad(x: torch.Tensor, min_val: float) -> torch.Tensor:
    """Forward value clamped at ``min_val``, gradient of the identity (straight-through)."""
    return x + (x.clamp(min=min_val) - x).detach()


@register_policy_loss("nft")
def nft_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
             agg_mode: str = "seq-mean-token-sum-norm", max_len: int | None = None,
             correct: torch.Tensor | None = None, group_accuracy: torch.Tensor | None = None,
             off_policy: torch.Tensor | None = None, generator: torch.Generator | None = None,
             neg_weight: float = 1.0, prompt_weighting: Literal["none", "neg_rate", "sqrt"] = "none",
             min_positive: float = 0.1, min_negative: float = 0.1) -> tuple[torch.Tensor, Metrics]:
    """NFT (Chen et al. 2025, "Bridging Supervised Learning and RL in Math Reasoning").

    Correct samples maximise ``log R`` with ``R = pi / pi_old``; wrong ones maximise the log-likelihood
    of the implicit negative policy, ``log((1 - r_q R) / (1 - r_q))``, where ``r_q`` is the prompt's
    (group's) accuracy, clipped to [0.02, 0.98] as the reference code does. Both logs see their argument
    clamped from below (``min_positive`` / ``min_negative``, our defaults: the reference code takes
    them from its config) with the gradient passed straight through. ``prompt_weighting``: ``none``,
    ``neg_rate`` (x (1 - r_q)) or ``sqrt`` (x sqrt((1 - r_q) / r_q)). ``advantages`` is unused: NFT
    needs ``correct`` bool (B,) and ``group_accuracy`` float (B,) instead. The reference aggregates as a
    token sum over a constant length, our default ``seq-mean-token-sum-norm``.
    """
    if correct is None or group_accuracy is None:
        raise ValueError("the nft loss needs correct (B,) and group_accuracy (B,)")
    r = group_accuracy.float().clamp(0.02, 0.98)[:, None]
    ratio = torch.exp((logp - old_logp).clamp(max=10.0))
    pos = -torch.log(_clamp_keep_grad(ratio, min_positive))
    neg = -torch.log(_clamp_keep_grad((1.0 - r * ratio) / (1.0 - r), min_negative))
    c = correct.float()[:, None]
    loss_mat = c * pos + (1.0 - c) * neg_weight * neg
    if prompt_weighting == "neg_rate":
        loss_mat = loss_mat * (1.0 - r)
    elif prompt_weighting == "sqrt":
        loss_mat = loss_mat * torch.sqrt((1.0 - r) / r)
    elif prompt_weighting != "none":
        raise ValueError(f"unknown NFT prompt_weighting {prompt_weighting!r}; valid: none, neg_rate, sqrt")
    metrics = {"actor/ppo_kl": masked_mean(old_logp - logp, mask).detach(),
               "actor/nft_neg_proxy_clamped": masked_mean(
                   ((1.0 - r * ratio) / (1.0 - r) < min_negative).float() * (1.0 - c), mask).detach()}
    return agg_loss(loss_mat, mask, agg_mode, max_len), metrics


@register_policy_loss("luffy")
def luffy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
               agg_mode: str = "token-mean", max_len: int | None = None,
               correct: torch.Tensor | None = None, group_accuracy: torch.Tensor | None = None,
               off_policy: torch.Tensor | None = None, generator: torch.Generator | None = None,
               gamma: float = 0.1, eps_low: float = 0.2, eps_high: float = 0.28,
               dual_clip_c: float | None = None) -> tuple[torch.Tensor, Metrics]:
    """LUFFY (Yan et al. 2025, "Learning to Reason under Off-Policy Guidance"): on-policy samples get the
    clipped PPO objective; off-policy samples (``off_policy`` bool (B,), e.g. reference solutions or
    demonstrations, whose behaviour log-probs are unknown) get the policy-shaping objective
    ``-A * f(pi)``, ``f(x) = x / (x + gamma)`` of the token probability, with no clipping, which
    boosts the gradient of low-probability tokens. ``off_policy`` None: every sample is on-policy."""
    if off_policy is None:
        off_policy = torch.zeros(logp.shape[0], dtype=torch.bool)
    adv = _broadcast(advantages, logp)
    on_loss, clipped, dual = _clipped_pg(torch.exp((logp - old_logp).clamp(-20.0, 20.0)), adv, eps_low, eps_high,
                                         dual_clip_c)
    prob = torch.exp(logp)
    off_loss = -adv * prob / (prob + gamma)
    off = off_policy.bool()[:, None].expand_as(logp)
    loss_mat = torch.where(off, off_loss, on_loss)
    on_mask = mask.bool() & ~off
    metrics = _ratio_metrics(logp, old_logp, on_mask, clipped, dual)
    metrics["actor/off_policy_frac"] = masked_mean(off.float(), mask).detach()
    return agg_loss(loss_mat, mask, agg_mode, max_len), metrics


def get_policy_loss(name: str) -> PolicyLoss:
    """The registered policy loss ``name``; a miss lists every registered one."""
    return POLICY_LOSSES.get(name)
