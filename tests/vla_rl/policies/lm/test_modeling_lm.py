"""The text LM policy: presets, the digit-splitting tokenizer, batched KV-cache generation that re-scores
to the same log-probs, shared prompt passes (values and gradients equal to the per-row pass), determinism,
checkpoints, foreign Hugging Face folders and the vLLM guard."""

import json

import pytest
import torch

from vla_rl.availability import DependencyNotInstalled, is_available
from vla_rl.policies.lm.configuration_lm import LMPolicyConfig, lm_preset
from vla_rl.policies.lm.modeling_lm import LMPolicy, TextBatch, prompt_groups, right_pad
from vla_rl.policies.lm.tokenization_lm import build_text_tokenizer, task_corpus

PROMPTS = ["Compute 3 + 4.\n", "Compute 12 * (7 - 5).\n", "hi", "Sort these numbers: 3, 1, 2.\n"]


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return build_text_tokenizer(task_corpus(("arithmetic", "sorting"), n=40), vocab_size=400)


def eos_prone(policy: LMPolicy, scale: float = 60.0) -> LMPolicy:
    """Blow up the (tied) stop-token embedding so that some rows stop early and others do not."""
    with torch.no_grad():
        policy.model.get_input_embeddings().weight[policy.stop_ids[0]] *= scale
    return policy


@pytest.fixture
def policy(tok):
    return LMPolicy.from_config("tiny", tok, seed=0).eval()


def test_presets_and_validation():
    tiny, small = lm_preset("tiny"), lm_preset("small")
    assert (tiny.num_layers, tiny.hidden_size) == (2, 64)
    assert (small.num_layers, small.hidden_size, small.num_heads, small.intermediate_size) == (4, 256, 4, 1024)
    assert lm_preset("tiny", type="qwen2").type == "qwen2"
    with pytest.raises(ValueError, match="valid: tiny, mini, small"):
        lm_preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        LMPolicyConfig(hidden_size=66, num_heads=4)


def test_tokenizer_splits_digits_round_trips_and_prepends_bos(tok):
    ids = tok("x = 12345", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p.isdigit()] == list("12345")
    for text in ["Compute 17 * (3 - 40).\n", "\\boxed{-12}", "Ünïcode ✓ 0.5"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok("abc")["input_ids"][0] == tok.bos_token_id


def test_left_pad_and_right_pad():
    b = TextBatch.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]] and b.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert b.rows() == [[5, 6, 7], [8]]
    t, m = right_pad([[1, 2], [3]], pad=9, width=3)
    assert t.tolist() == [[1, 2, 9], [3, 9, 9]] and m.tolist() == [[1, 1, 0], [1, 0, 0]]


def test_sampled_logprobs_equal_rescored_logprobs_with_early_stops(policy):
    pol = eos_prone(policy)
    batch = pol.encode(PROMPTS * 2)
    # a draw (seed 4) with rows of both kinds; which draw does depends on the tokenizer's ids
    out = pol.generate(batch, 16, temperature=0.8, generator=torch.Generator().manual_seed(4))
    lengths = out.lengths
    assert out.finished.any() and (lengths < out.tokens.shape[1]).any(), "need rows that stopped early"
    assert (lengths == 16).any(), "need rows that ran to the budget"
    for i in range(len(batch)):  # a finished row ends with its stop token and stays finished
        n = int(lengths[i])
        assert bool(out.finished[i]) == (out.tokens[i, n - 1].item() in pol.stop_ids)
        assert (out.mask[i, n:] == 0).all() and (out.tokens[i, n:] == pol.pad_id).all()
        assert (out.logprobs[i, n:] == 0).all()
    with torch.no_grad():
        logp, ent = pol.logprobs(batch, out.tokens, 0.8)
    m = out.mask.bool()
    torch.testing.assert_close(logp[m], out.logprobs[m], atol=1e-4, rtol=0)
    torch.testing.assert_close(ent[m], out.entropy[m], atol=1e-4, rtol=0)
    assert out.texts == pol.decode(out.tokens, out.mask)


def test_rescoring_does_not_depend_on_padding(policy):
    batch = policy.encode(PROMPTS)
    out = policy.generate(batch, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        together, _ = policy.logprobs(batch, out.tokens, 1.0)
        alone, _ = policy.logprobs(policy.encode(PROMPTS[2:3]), out.tokens[2:3], 1.0)
    torch.testing.assert_close(together[2], alone[0], atol=1e-5, rtol=0)


def test_greedy_follows_the_argmax_and_per_row_budgets(policy):
    batch = policy.encode(PROMPTS)
    out = policy.generate(batch, torch.tensor([3, 5, 1, 4]), greedy=True)
    assert out.lengths.tolist() == [3, 5, 1, 4] and not out.finished.any()
    with torch.no_grad():
        arg = policy.completion_logits(batch, out.tokens).argmax(-1)
    m = out.mask.bool()
    assert torch.equal(arg[m], out.tokens[m])


def test_same_generator_seed_same_completions(policy):
    runs = [policy.generate(PROMPTS, 10, 1.2, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and runs[0].texts == runs[1].texts
    assert torch.equal(runs[0].logprobs, runs[1].logprobs)
    assert not torch.equal(runs[0].tokens, runs[2].tokens)


def test_prompt_groups_finds_repeated_prompts():
    b = TextBatch(
        torch.tensor([[0, 0, 5, 6], [0, 0, 7, 8], [9, 9, 5, 6], [0, 4, 5, 6]]),  # rows 0 and 2 differ in padding only
        torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]]),
    )
    prompts, rows = prompt_groups(b)
    assert rows.tolist()[0] == rows.tolist()[2] and len(set(rows.tolist())) == 3 and len(prompts) == 3
    assert sorted(prompts.rows()) == [[4, 5, 6], [5, 6], [7, 8]] and prompts.input_ids.shape[1] == 3
    assert [prompts.rows()[int(r)] for r in rows] == b.rows()
    assert prompt_groups(b.index(slice(0, 2))) is None and prompt_groups(b.index(slice(0, 1))) is None
    narrow, rows = prompt_groups(b.index([0, 1, 0]))  # the all-padding first two columns are dropped
    assert narrow.input_ids.shape[1] == 2 and torch.equal(narrow.attention_mask[rows], torch.ones(3, 2).long())


def grouped_batch(policy: LMPolicy, seed: int) -> tuple[TextBatch, torch.Tensor, torch.Tensor]:
    """Groups of repeated prompts of different lengths, shuffled (a GRPO minibatch), and completions of 1-9 tokens
    (right-padded): (batch, tokens, token mask)."""
    g = torch.Generator().manual_seed(seed)
    texts = [PROMPTS[i] for i in torch.randperm(12, generator=g) % 3]  # 3 prompts x 4
    lengths = torch.randint(1, 10, (len(texts),), generator=g)
    lengths[0] = 9
    tokens, mask = right_pad(
        [torch.randint(3, len(policy.tokenizer), (int(n),), generator=g) for n in lengths], policy.pad_id
    )
    return policy.encode(texts), tokens, mask


def scored(policy: LMPolicy, batch: TextBatch, tokens: torch.Tensor, mask: torch.Tensor, share: bool):
    """Log-probs, entropies and the parameter gradients of a token-mean loss over both, shared or per row."""
    policy.share_prompts = share
    policy.zero_grad()
    logp, ent = policy.logprobs(batch, tokens, 0.7)
    ((logp + 0.1 * ent) * mask).sum().div(mask.sum()).backward()
    return logp.detach(), ent.detach(), {n: p.grad.clone() for n, p in policy.named_parameters()}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prompt_scoring_equals_the_per_row_pass_with_gradients(tok, arch):
    cfg = lm_preset("tiny", type=arch, num_kv_heads=2 if arch == "qwen2" else None)
    policy = LMPolicy.from_config(cfg, tok, seed=1).train()
    embedded = []
    policy.model.get_input_embeddings().register_forward_hook(lambda m, i, o: embedded.append(i[0].numel()))
    for seed in (0, 1):
        batch, tokens, mask = grouped_batch(policy, seed)
        embedded.clear()
        full = scored(policy, batch, tokens, mask, share=False)
        assert embedded == [batch.input_ids.numel() + tokens.numel()]
        embedded.clear()
        shared = scored(policy, batch, tokens, mask, share=True)
        p, t = batch.input_ids.shape[1], tokens.shape[1]
        assert embedded == [3 * p, 12 * (t - 1)], "each distinct prompt once, then the completions"
        torch.testing.assert_close(shared[0], full[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(shared[1], full[1], atol=1e-5, rtol=0)
        assert full[2].keys() == shared[2].keys()
        for name, grad in full[2].items():
            assert grad.abs().sum() > 0, name
            torch.testing.assert_close(shared[2][name], grad, atol=1e-5, rtol=0, msg=name)


def test_shared_prompt_scoring_edge_cases(policy):
    batch, tokens, _ = grouped_batch(policy, 2)
    wide = TextBatch.left_pad(batch.rows() + [list(range(3, 40))], policy.pad_id)  # a long extra prompt
    sub = wide.index(torch.arange(12))  # a minibatch with all-padding leading columns
    with torch.no_grad():
        for b, toks in [(sub, tokens), (sub, tokens[:, :1]), (sub, tokens[:, :0])]:
            policy.share_prompts = False
            ref = policy.logprobs(b, toks)
            policy.share_prompts = True
            out = policy.logprobs(b, toks)
            assert out[0].shape == toks.shape
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_shared_prefill_generates_the_same_completions(policy):
    pol = eos_prone(policy, 30.0)
    batch = pol.encode([PROMPTS[i] for i in [0, 1, 0, 2, 3, 1, 0, 2, 3, 3]])
    runs = []
    for share in (False, True):
        pol.share_prompts = share
        runs.append(pol.generate(batch, torch.arange(10) + 3, 0.9, torch.Generator().manual_seed(5)))
    full, shared = runs
    assert full.finished.any() and not full.finished.all(), "need rows that stop and rows that run on"
    assert torch.equal(shared.tokens, full.tokens) and torch.equal(shared.mask, full.mask)
    assert torch.equal(shared.finished, full.finished) and shared.texts == full.texts
    torch.testing.assert_close(shared.logprobs, full.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy, full.entropy, atol=1e-5, rtol=0)


def test_save_and_load_gives_identical_logits(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / "ckpt", extra={"step": 3})
    assert json.loads((path / "lm_policy.json").read_text())["extra"] == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left behind
    policy.save_pretrained(tmp_path / "ckpt")  # overwriting an existing checkpoint works too
    back = LMPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert back.config == policy.config and back.stop_ids == policy.stop_ids and back.pad_id == policy.pad_id
    batch = policy.encode(PROMPTS)
    tokens = torch.randint(0, len(policy.tokenizer), (len(PROMPTS), 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(
            policy.completion_logits(batch, tokens), back.completion_logits(back.encode(PROMPTS), tokens)
        )


def test_loads_any_hugging_face_causal_lm_folder(tok, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            eos_token_id=tok.eos_token_id,
        )
    ).eval()
    model.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    pol = LMPolicy.from_pretrained(tmp_path / "hf").eval()
    assert pol.config is None and type(pol.model).__name__ == "Qwen2ForCausalLM"
    ids = pol.encode(["Compute 1 + 2."]).input_ids
    with torch.no_grad():
        assert torch.equal(pol.model(ids).logits, model(ids).logits)
    out = pol.generate(["Compute 1 + 2."], 4, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (1, 4)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        LMPolicy.from_pretrained(tmp_path / "nowhere")


@pytest.mark.skipif(is_available("vllm"), reason="vllm is installed here")
def test_vllm_backend_without_vllm_names_the_install_line(tok):
    with pytest.raises(DependencyNotInstalled, match=r'pip install -e "\.\[vllm\]"'):
        LMPolicy.from_config("tiny", tok, backend="vllm")
