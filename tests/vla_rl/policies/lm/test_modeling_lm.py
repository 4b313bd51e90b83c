"""The text LM policy: presets, the digit-splitting tokenizer, batched KV-cache generation that re-scores
to the same log-probs, determinism, checkpoints, foreign Hugging Face folders and the vLLM guard."""

import json

import pytest
import torch

from vla_rl.availability import DependencyNotInstalled, is_available
from vla_rl.policies.lm.configuration_lm import LMPolicyConfig, lm_preset
from vla_rl.policies.lm.modeling_lm import LMPolicy, TextBatch, right_pad
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
    out = pol.generate(batch, 16, temperature=0.8, generator=torch.Generator().manual_seed(0))
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
