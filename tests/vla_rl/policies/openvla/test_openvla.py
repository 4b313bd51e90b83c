"""OpenVLA / OpenVLA-OFT folders (synthetic: OpenVLA's config fields and parameter names, tiny sizes) as policies:
they load tensor for tensor, decode actions by OpenVLA's formula, score what they sample, survive save / load and the
export back to OpenVLA's layout, and incomplete or foreign folders are refused with the reason."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.vla_rl.policies.openvla.synthetic import DATASETS, model_state, oft_components, write_folder
from vla_rl.policies.openvla.configuration_openvla import OpenVLAFolderError
from vla_rl.policies.openvla.modeling_openvla import OpenVLAPolicy

INSTRUCTIONS = ["pick up the cube", "open the drawer", "Put the bowl on the plate"]  # three prompt lengths


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("openvla")
    return {"openvla": write_folder(root / "openvla"), "oft": write_folder(root / "oft", oft=True, shards=3)}


@pytest.fixture(scope="module")
def openvla(folders):
    return OpenVLAPolicy.from_pretrained(folders["openvla"], unnorm_key=DATASETS[1])


@pytest.fixture(scope="module")
def oft(folders):
    return OpenVLAPolicy.from_pretrained(folders["oft"], unnorm_key=DATASETS[0])


def observation(n: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"agentview": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8),
            "state": rng.uniform(-1.5, 1.5, (n, 8))}


def reference_actions(token_ids: np.ndarray, action_stats: dict, span_eps: float = 0.0) -> np.ndarray:
    """OpenVLA's de-tokenisation written out element by element (its predict_action; OFT adds 1e-8 to the span)."""
    edges = np.linspace(-1, 1, 256)
    centres = [(edges[i] + edges[i + 1]) / 2 for i in range(255)]
    out = np.zeros(token_ids.shape)
    for idx in np.ndindex(token_ids.shape):
        d = idx[-1]
        i = min(max(32064 - 64 - int(token_ids[idx]) - 1, 0), 254)
        c = centres[i]
        if action_stats["mask"][d]:
            lo, hi = action_stats["q01"][d], action_stats["q99"][d]
            out[idx] = 0.5 * (c + 1) * (hi - lo + span_eps) + lo
        else:
            out[idx] = c
    return out


def test_folder_loads_tensor_for_tensor(folders, openvla, oft):
    want = model_state()
    got = openvla.state_dict()
    assert set(got) == set(want)  # OpenVLA's names exactly: nothing missing, nothing of ours added
    assert all(torch.equal(got[k], want[k]) for k in want)
    comps = oft_components()
    oft_state = oft.state_dict()
    for name, part in comps.items():  # the `module.` prefix dropped, the component under its name
        assert all(torch.equal(oft_state[f"{name}.{k.removeprefix('module.')}"], v) for k, v in part.items())
    assert oft.config.variant == "oft" and oft.config.chunk_size == 8 and oft.config.use_proprio
    assert openvla.config.variant == "openvla" and openvla.config.chunk_size == 1


def test_unnorm_key_must_name_a_dataset(folders):
    with pytest.raises(OpenVLAFolderError, match="choose one with unnorm_key.*bridge_orig, libero_spatial_no_noops"):
        OpenVLAPolicy.from_pretrained(folders["openvla"])
    with pytest.raises(OpenVLAFolderError, match="'libero_10' is not in .* valid: bridge_orig"):
        OpenVLAPolicy.from_pretrained(folders["openvla"], unnorm_key="libero_10")


@pytest.mark.parametrize("name", ["openvla", "oft"])
def test_decoded_actions_follow_openvla_formula(name, openvla, oft):
    policy = openvla if name == "openvla" else oft
    batch = policy.processor()(observation(), INSTRUCTIONS)
    stats = policy.hf_config["norm_stats"][policy.config.unnorm_key]["action"]
    eps = 1e-8 if name == "oft" else 0.0
    for greedy in (True, False):
        out = policy.act(batch, temperature=1.6, greedy=greedy, generator=torch.Generator().manual_seed(1))
        ids = out.tokens.numpy().reshape(3, policy.config.chunk_size, 7) + 32000 - 256
        np.testing.assert_allclose(out.actions, reference_actions(ids, stats, eps), rtol=0, atol=1e-6)
    greedy = policy.act(batch, greedy=True).tokens  # the argmax of the logits over the action ids 31744..31999
    assert torch.equal(greedy, policy.action_logits(batch, greedy).argmax(-1))
    lp, ent = policy.logprobs(batch, out.tokens, temperature=1.6)  # sampled log-probs are the scored ones
    torch.testing.assert_close(lp.detach(), out.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.detach(), out.entropy, atol=1e-5, rtol=0)


def test_libero_gripper_convention(folders):
    p = OpenVLAPolicy.from_pretrained(folders["openvla"], unnorm_key=DATASETS[0], gripper="libero")
    tok = p.action_tokenizer
    ids = np.full((2, 7), 31744 + 100)
    ids[0, 6], ids[1, 6] = 31999, 31744  # the bins of the lowest (-> open in the data: 0) and highest values
    assert tok.decode(ids)[:, 6].tolist() == [1.0, -1.0]  # data's 0 -> +1 (close), data's 1 -> -1 (open)


def test_rows_do_not_depend_on_padding(openvla, oft):
    for policy in (openvla, oft):
        proc = policy.processor()
        obs = observation()
        batch = proc(obs, INSTRUCTIONS)
        assert len(set(batch.attention_mask.sum(1).tolist())) > 1  # different prompt lengths in one batch
        out = policy.act(batch, greedy=True)
        for i in range(3):
            one = policy.act(proc({k: v[i : i + 1] for k, v in obs.items()}, INSTRUCTIONS[i : i + 1]), greedy=True)
            assert torch.equal(one.tokens[0], out.tokens[i])
            torch.testing.assert_close(one.logprobs[0], out.logprobs[i], atol=1e-5, rtol=0)


def test_causal_scoring_matches_transformers_own_forward(openvla):
    """Our left-aligned 4D-mask forward against the LM's default causal forward on the plain unpadded sequence."""
    p = openvla
    batch = p.processor()(observation(1), INSTRUCTIONS[2:])
    tokens = p.act(batch, generator=torch.Generator().manual_seed(0)).tokens
    n = int(batch.attention_mask.sum())
    with torch.no_grad():
        embed = p.language_model.get_input_embeddings()
        img = p.projector(p.vision_backbone(batch.pixels[:, 0]))
        ids = batch.input_ids[:, :n]
        seq = torch.cat([embed(ids[:, :1]), img, embed(ids[:, 1:]), embed(tokens[:, :-1] + 31744)], 1)
        logits = p.language_model(inputs_embeds=seq).logits[:, -7:, 31744:32000]
        ref = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
        ours, _ = p.logprobs(batch, tokens)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_oft_l1_head_actions(folders):
    p = OpenVLAPolicy.from_pretrained(folders["oft"], unnorm_key=DATASETS[0], action_head="l1")
    batch = p.processor()(observation(2), INSTRUCTIONS[:2])
    out = p.act(batch, greedy=True)
    head = {k.removeprefix("module."): v for k, v in oft_components()["action_head"].items()}
    with torch.no_grad():  # OFT's MLPResNet written out from its tensors
        x = p.action_hidden(batch).reshape(2, 8, -1)
        x = torch.relu(torch.nn.functional.linear(torch.nn.functional.layer_norm(
            x, (x.shape[-1],), head["model.layer_norm1.weight"], head["model.layer_norm1.bias"]),
            head["model.fc1.weight"], head["model.fc1.bias"]))
        for i in range(2):
            b = f"model.mlp_resnet_blocks.{i}.ffn."
            y = torch.nn.functional.layer_norm(x, (x.shape[-1],), head[b + "0.weight"], head[b + "0.bias"])
            x = x + torch.relu(torch.nn.functional.linear(y, head[b + "1.weight"], head[b + "1.bias"]))
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), head["model.layer_norm2.weight"],
                                           head["model.layer_norm2.bias"])
        norm = torch.nn.functional.linear(x, head["model.fc2.weight"], head["model.fc2.bias"]).numpy()
    stats = p.hf_config["norm_stats"][DATASETS[0]]["action"]
    lo, hi, mask = np.array(stats["q01"]), np.array(stats["q99"]), np.array(stats["mask"])
    np.testing.assert_allclose(out.actions, np.where(mask, 0.5 * (norm + 1) * (hi - lo + 1e-8) + lo, norm), atol=1e-5)
    with pytest.raises(OpenVLAFolderError, match="action_head--<step>_checkpoint.pt"):  # a folder without OFT's head
        OpenVLAPolicy.from_pretrained(folders["openvla"], unnorm_key=DATASETS[0], variant="oft", action_head="l1")


@pytest.mark.parametrize("name", ["openvla", "oft"])
def test_save_load_same_outputs(name, openvla, oft, tmp_path):
    policy = openvla if name == "openvla" else oft
    batch = policy.processor()(observation(), INSTRUCTIONS)
    out = policy.act(batch, temperature=1.3, generator=torch.Generator().manual_seed(4))
    policy.save_pretrained(tmp_path / "ours", extra={"iteration": 3})
    back = OpenVLAPolicy.from_pretrained(tmp_path / "ours")
    assert back.config == policy.config
    again = back.act(back.processor()(observation(), INSTRUCTIONS), temperature=1.3,
                     generator=torch.Generator().manual_seed(4))
    assert torch.equal(again.tokens, out.tokens) and np.array_equal(again.actions, out.actions)
    torch.testing.assert_close(again.logprobs, out.logprobs, atol=0, rtol=0)


def test_round_trip_through_openvla_layout(oft, tmp_path):
    from vla_rl.cli import main

    oft.save_pretrained(tmp_path / "ours")
    assert main(["export-openvla", str(tmp_path / "ours"), str(tmp_path / "hf"), "--max-shard-mb", "0.5"]) == 0
    hf = tmp_path / "hf"
    cfg = json.loads((hf / "config.json").read_text())
    assert cfg["model_type"] == "openvla" and cfg["norm_stats"] == oft.hf_config["norm_stats"]
    index = json.loads((hf / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) > 1  # sharded, as transformers writes large models
    assert sorted(p.name for p in hf.glob("*--*_checkpoint.pt")) == ["action_head--150000_checkpoint.pt",
                                                                     "proprio_projector--150000_checkpoint.pt"]
    back = OpenVLAPolicy.from_pretrained(hf)  # its acting settings travel in config.json
    assert back.config == oft.config
    ours, theirs = oft.state_dict(), back.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    back.save_pretrained(tmp_path / "ours2")
    a, b = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "ours2" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_incomplete_or_foreign_folders_are_refused(folders, tmp_path):
    broken = shutil.copytree(folders["oft"], tmp_path / "broken")
    (broken / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(OpenVLAFolderError, match="missing shard.*model-00002-of-00003.safetensors"):
        OpenVLAPolicy.from_pretrained(broken, unnorm_key=DATASETS[0])
    other = shutil.copytree(folders["openvla"], tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "prismatic"}))
    with pytest.raises(OpenVLAFolderError, match="model_type 'prismatic'; expected 'openvla'"):
        OpenVLAPolicy.from_pretrained(other, unnorm_key=DATASETS[0])
    (other / "config.json").write_text(json.dumps({**cfg, "norm_stats": None}))
    (other / "dataset_statistics.json").unlink()
    with pytest.raises(OpenVLAFolderError, match="no norm stats"):
        OpenVLAPolicy.from_pretrained(other, unnorm_key=DATASETS[0])
    twice = shutil.copytree(folders["oft"], tmp_path / "twice")
    shutil.copy(twice / "action_head--150000_checkpoint.pt", twice / "action_head--5000_checkpoint.pt")
    with pytest.raises(OpenVLAFolderError, match="2 action_head checkpoints"):
        OpenVLAPolicy.from_pretrained(twice, unnorm_key=DATASETS[0])


def test_export_bakes_acting_settings_into_the_folder(folders, tmp_path, capsys):
    """A folder of several datasets needs an unnorm_key; the export writes it (and the gripper convention) into
    config.json, so the trainer, which passes no settings, loads the result."""
    from vla_rl.cli import main
    from vla_rl.policies.factory import load_robot_policy

    src, out = str(folders["openvla"]), str(tmp_path / "hf")
    assert main(["export-openvla", src, out, "unnorm_key=nope"]) == 2
    assert "valid: bridge_orig, libero_spatial_no_noops" in capsys.readouterr().err
    assert main(["export-openvla", src, out, "unnorm_key=bridge_orig", "gripper=libero"]) == 0
    policy = load_robot_policy(out)
    assert isinstance(policy, OpenVLAPolicy)
    assert (policy.config.unnorm_key, policy.config.gripper) == ("bridge_orig", "libero")
