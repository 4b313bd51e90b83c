"""The VLA policy: decoding paths, log-prob consistency, checkpoints, presets."""

import numpy as np
import pytest
import torch

from vla_rl.policies.tokenizer import action_token_offset, build_tokenizer
from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig, vla_preset
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.policies.vla.processor_vla import NormStats

TEXTS = ["pick up the red cube", "open the drawer", "put the cube in the bin", "stack the cubes"]
A_STATS = NormStats(-np.ones(7), np.ones(7))
S_STATS = NormStats(-np.ones(8), np.ones(8))


def micro(**kw) -> VLAConfig:
    return VLAConfig(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                                         intermediate_size=64),
                     lm=LMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                     cameras=("agentview", "wrist"), chunk_size=2, **kw)


def make(cfg: VLAConfig, seed: int = 0) -> VLAPolicy:
    torch.manual_seed(seed)
    tok = build_tokenizer(TEXTS * 5, vocab_size=300)
    return VLAPolicy(cfg, len(tok), A_STATS, S_STATS, tokenizer=tok).eval()


def with_vision(**kw) -> VLAConfig:
    """``micro()`` with vision keys changed."""
    cfg = micro()
    return cfg.model_copy(update={"vision": cfg.vision.model_copy(update=kw)})


def assert_round_trips(pol: VLAPolicy, cfg: VLAConfig, batch, ref: torch.Tensor, path) -> None:
    """Saved and loaded with ``expect=cfg``, ``pol`` gives the action logits ``ref`` on ``batch`` exactly."""
    pol.save_pretrained(path)
    again = VLAPolicy.from_pretrained(path, expect=cfg)
    torch.testing.assert_close(again.action_logits(batch), ref, rtol=0, atol=0)


def obs(b: int = 5, size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"agentview": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
            "state": rng.normal(size=(b, 8)).astype(np.float32)}


def test_tokenizer_puts_action_ids_last_and_survives_save(tmp_path):
    tok = build_tokenizer(TEXTS, vocab_size=300)
    off = action_token_offset(tok)
    assert len(tok) == off + 256
    assert tok.decode(tok("open the drawer")["input_ids"]) == "open the drawer"
    tok.save_pretrained(tmp_path)
    from transformers import PreTrainedTokenizerFast

    again = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert action_token_offset(again) == off and again("stack the cubes") == tok("stack the cubes")


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_sampled_logprobs_equal_rescored_logprobs(decoding):
    pol = make(micro(decoding=decoding))
    batch = pol.processor()(obs(), [TEXTS[i % 4] for i in range(5)])
    for temperature in (1.0, 1.6):
        out = pol.act(batch, temperature=temperature, generator=torch.Generator().manual_seed(1))
        k = pol.config.num_action_tokens
        assert out.tokens.shape == (5, k) and out.tokens.min() >= 0 and out.tokens.max() < 256
        assert out.actions.shape == (5, 2, 7) and out.actions.dtype == np.float32
        lp, ent = pol.logprobs(batch, out.tokens, temperature)
        torch.testing.assert_close(lp, out.logprobs, atol=1e-5, rtol=0)
        torch.testing.assert_close(ent, out.entropy, atol=1e-5, rtol=0)
        assert (ent > 0).all() and (ent <= np.log(256) + 1e-4).all()


def test_greedy_is_argmax_and_deterministic():
    pol = make(micro())
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    a, b = pol.act(batch, greedy=True), pol.act(batch, greedy=True)
    torch.testing.assert_close(a.tokens, b.tokens)
    logits = pol.action_logits(batch)
    torch.testing.assert_close(a.tokens, logits.argmax(-1))


def _median_bins(probs: torch.Tensor) -> torch.Tensor:
    """Loop reference: per row and token, the first bin whose cumulative probability reaches 0.5."""
    out = torch.empty(probs.shape[:-1], dtype=torch.long)
    for b in range(probs.shape[0]):
        for j in range(probs.shape[1]):
            c = 0.0
            for i in range(probs.shape[2]):
                c += float(probs[b, j, i])
                if c >= 0.5:
                    break
            out[b, j] = i
    return out


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_median_point_decoding_takes_each_tokens_median_bin(decoding):
    """greedy acting with point_decoding median (from the config, or overriding it per call) picks the
    median bin of each token's distribution (loop reference), repeatably, scored like any token."""
    batch = make(micro()).processor()(obs(), ["open the drawer"] * 5)
    pol = make(micro(decoding=decoding, point_decoding="median"))
    a, b = pol.act(batch, greedy=True), pol.act(batch, greedy=True)
    torch.testing.assert_close(a.tokens, b.tokens)
    with torch.no_grad():
        logits = pol.action_logits(batch, a.tokens).float()  # teacher-forced: the same prefix per token
    torch.testing.assert_close(a.tokens, _median_bins(torch.softmax(logits, -1)))
    lp, _ = pol.logprobs(batch, a.tokens)
    torch.testing.assert_close(lp, a.logprobs, atol=1e-5, rtol=0)
    argmax = make(micro(decoding=decoding))  # same weights, argmax config: the per-call override switches it
    torch.testing.assert_close(argmax.act(batch, greedy=True, point_decoding="median").tokens, a.tokens)
    torch.testing.assert_close(pol.act(batch, greedy=True, point_decoding="argmax").tokens,
                               argmax.act(batch, greedy=True).tokens)
    with pytest.raises(ValueError, match="unknown point_decoding 'mean'; valid: argmax, median"):
        pol.act(batch, greedy=True, point_decoding="mean")


def test_median_and_argmax_part_on_a_flat_topped_distribution():
    """A spike holding 30% at bin 10 and 70% spread evenly over bins 100..139: argmax takes the spike, the
    median the middle of the spread (bin 100 + the 20% of 70% needed to reach 0.5, i.e. bin 111)."""
    from vla_rl.policies.vla.modeling_vla import _sample

    p = torch.zeros(1, 1, 256)
    p[..., 10] = 0.3
    p[..., 100:140] = 0.7 / 40
    logits = p.clamp_min(1e-12).log()
    assert int(_sample(logits, 1.0, True, None)[0]) == 10
    assert int(_sample(logits, 1.0, True, None, point="median")[0]) == 111


def test_quantile_sampling_is_the_inverse_cdf_and_scores_like_any_sample():
    """Each token is the first bin whose cumulative tempered probability reaches its quantile (loop reference);
    its log-prob is the re-scored one; uniform quantiles reproduce the policy's distribution."""
    pol = make(micro())
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    k = pol.config.num_action_tokens
    q = torch.rand(5, k, generator=torch.Generator().manual_seed(0))
    out = pol.act(batch, temperature=1.6, quantiles=q)
    with torch.no_grad():
        probs = torch.softmax(pol.action_logits(batch).float() / 1.6, -1)
    for b in range(5):
        for j in range(k):
            c, want = 0.0, 255
            for i in range(256):
                c += float(probs[b, j, i])
                if c >= float(q[b, j]):
                    want = i
                    break
            assert int(out.tokens[b, j]) == want
    lp, _ = pol.logprobs(batch, out.tokens, 1.6)
    torch.testing.assert_close(lp, out.logprobs, atol=1e-5, rtol=0)
    n = 4000  # uniform quantiles -> the policy's own distribution, for one row and token
    row = pol.processor()(obs(1), ["open the drawer"])
    with torch.no_grad():
        logits = pol.action_logits(row).float().expand(n, -1, -1)
    from vla_rl.policies.vla.modeling_vla import _sample

    toks, _, _ = _sample(logits, 1.0, False, None, torch.rand(n, k, generator=torch.Generator().manual_seed(1)))
    freq = torch.bincount(toks[:, 0], minlength=256).float() / n
    p0 = torch.softmax(logits[0, 0], -1)
    assert (freq - p0).abs().max() < 0.03 and freq[p0.argmax()] > 0
    with pytest.raises(ValueError, match="parallel decoding only"):
        make(micro(decoding="autoregressive")).act(batch, quantiles=q)


def test_gradients_reach_every_part():
    pol = make(micro())
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    out = pol.act(batch)
    lp, _ = pol.logprobs(batch, out.tokens)
    lp.mean().backward()
    for name in ("vision", "projector", "lm", "proprio", "action_slots", "camera_embed"):
        grads = [p.grad for n, p in pol.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_instruction_changes_the_output():
    pol = make(micro())
    proc = pol.processor()
    o = obs()
    la = pol.action_logits(proc(o, ["open the drawer"] * 5))
    lb = pol.action_logits(proc(o, ["stack the cubes"] * 5))
    assert not torch.allclose(la, lb)


def test_save_load_gives_identical_logits(tmp_path):
    pol = make(micro())
    batch = pol.processor()(obs(), ["put the cube in the bin"] * 5)
    ref = pol.action_logits(batch)
    pol.save_pretrained(tmp_path / "ckpt", extra={"step": 3})
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    again = VLAPolicy.from_pretrained(tmp_path / "ckpt", expect=micro()).eval()
    batch2 = again.processor()(obs(), ["put the cube in the bin"] * 5)
    torch.testing.assert_close(again.action_logits(batch2), ref, rtol=0, atol=0)
    np.testing.assert_array_equal(again.action_tokenizer.stats.q99, A_STATS.q99)


def test_n_action_steps_returns_the_chunk_head_and_survives_save(tmp_path):
    """Receding horizon: the same tokens are decoded, the actions to execute are the first n steps."""
    pol = make(micro())
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    full = pol.act(batch, greedy=True)
    pol.set_n_action_steps(1)
    head = pol.act(batch, greedy=True)
    torch.testing.assert_close(head.tokens, full.tokens)
    assert head.actions.shape == (5, 1, 7)
    np.testing.assert_array_equal(head.actions, full.actions[:, :1])
    pol.save_pretrained(tmp_path / "ckpt")
    assert VLAPolicy.from_pretrained(tmp_path / "ckpt").config.n_action_steps == 1
    with pytest.raises(ValueError, match="n_action_steps 3 exceeds chunk_size 2"):
        pol.set_n_action_steps(3)
    with pytest.raises(ValueError, match="exceeds chunk_size"):
        micro(n_action_steps=5)


def test_checkpoint_from_another_config_is_refused(tmp_path):
    make(micro()).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"chunk_size: expected 4, checkpoint has 2"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt", expect=micro().model_copy(update={"chunk_size": 4}))
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        VLAPolicy.from_pretrained(tmp_path)


def test_corrupt_weights_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    make(micro()).save_pretrained(tmp_path / "ckpt")
    w = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    w["action_slots"] = torch.zeros(3, 3)
    save_file(w, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(ValueError, match="action_slots: checkpoint"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")


def test_processor_resizes_and_refuses_missing_camera():
    pol = make(micro())
    proc = pol.processor()
    b = proc(obs(size=64), ["open the drawer"] * 5)
    assert b.pixels.shape == (5, 2, 3, 32, 32) and b.pixels.min() >= -1.0 and b.pixels.max() <= 1.0
    o = obs()
    del o["wrist"]
    with pytest.raises(KeyError, match="wrist"):
        proc(o, ["x"] * 5)


def test_openvla_7b_preset_builds_with_real_shapes_without_weights():
    cfg = vla_preset("openvla-7b")
    with torch.device("meta"):
        pol = VLAPolicy(cfg, 32000, A_STATS, S_STATS)
    n = pol.num_parameters()
    assert 6.9e9 < n < 7.3e9, n  # Llama-2 7B (6.74B) + SigLIP-so400m (0.43B) + projector
    assert pol.action_offset == 32000 - 256


def test_conv_stem_hybrid_encoder_round_trips(tmp_path):
    cfg = with_vision(conv_stem=True)
    pol = make(cfg)
    stem = pol.vision.embeddings.patch_embedding
    assert [m.stride for m in stem if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 3  # patch 8 = 2^3
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    assert_round_trips(pol, cfg, batch, pol.action_logits(batch), tmp_path / "c")
    with pytest.raises(ValueError, match="power-of-two"):
        VisionConfig(image_size=30, patch_size=6, conv_stem=True)


def test_spatial_softmax_finds_a_bright_spot():
    from vla_rl.policies.vla.modeling_vla import SpatialSoftmax

    kp = SpatialSoftmax(1)
    kp.convs = torch.nn.Identity()  # the feature map is the image's first channel itself (S x S)
    kp.log_temp.data.fill_(np.log(0.02))
    img = torch.zeros(3, 1, 16, 16)
    spots = [(2, 13), (8, 8), (15, 0)]  # (row, col)
    for i, (r, c) in enumerate(spots):
        img[i, 0, r, c] = 1.0
    xy = kp(img)[:, 0]  # (3, 2)
    grid = torch.linspace(-1, 1, 16)
    want = torch.tensor([[grid[c].item(), grid[r].item()] for r, c in spots])
    torch.testing.assert_close(xy, want, atol=1e-3, rtol=0)


def test_keypoint_tokens_carry_image_positions_and_round_trip(tmp_path):
    cfg = with_vision(keypoints=4)
    pol = make(cfg)
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    emb, mask = pol._prefix(batch)
    plain, _ = make(micro())._prefix(batch)
    assert emb.shape[1] == plain.shape[1] + 2 and mask.shape == emb.shape[:2]  # one extra token per camera
    ref = pol.action_logits(batch)
    ref.sum().backward()
    assert pol.keypoints.convs[0].weight.grad.abs().sum() > 0  # the branch is trained
    assert_round_trips(pol, cfg, batch, ref.detach(), tmp_path / "k")
    with pytest.raises(ValueError, match="keypoints"):
        VLAPolicy.from_pretrained(tmp_path / "k", expect=micro())


def test_merge_patches_is_a_pixel_shuffle_of_the_grid():
    from vla_rl.policies.vla.modeling_vla import merge_patches

    g, r, c = 4, 2, 3
    feats = torch.randn(2, g * g, c)  # row-major 4 x 4 grid
    out = merge_patches(feats, r)
    ref = torch.empty(2, (g // r) ** 2, r * r * c)
    for bi in range(g // r):  # slow reference: walk each block's patches row by row
        for bj in range(g // r):
            parts = [feats[:, (bi * r + i) * g + bj * r + j] for i in range(r) for j in range(r)]
            ref[:, bi * (g // r) + bj] = torch.cat(parts, -1)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert merge_patches(feats, 1) is feats


def test_merged_image_tokens_shorten_the_sequence_and_round_trip(tmp_path):
    cfg = with_vision(merge=2)
    pol = make(cfg)
    batch = pol.processor()(obs(), ["open the drawer"] * 5)
    emb, _ = pol._prefix(batch)
    plain, _ = make(micro())._prefix(batch)
    assert plain.shape[1] - emb.shape[1] == 2 * (16 - 4)  # two cameras, a 4 x 4 patch grid -> 2 x 2
    assert_round_trips(pol, cfg, batch, pol.action_logits(batch), tmp_path / "m")
    with pytest.raises(ValueError, match="multiple of merge"):
        VisionConfig(image_size=24, patch_size=8, merge=2)  # a 3 x 3 grid
    with pytest.raises(ValueError, match="siglip"):
        VisionConfig(type="vit", merge=2)
