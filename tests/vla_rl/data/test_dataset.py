"""SFTDataset: sample layout, action-chunk padding and mask, stats, DataLoader batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vla_rl.data.dataset import SFTDataset
from vla_rl.data.lerobot import write_lerobot


@pytest.fixture
def ds_root(tmp_path, episodes):
    write_lerobot(tmp_path / "ds", episodes)
    return tmp_path / "ds"


def test_items_and_padding(ds_root, episodes):
    ds = SFTDataset(ds_root, chunk_size=4)
    assert len(ds) == 21 and ds.locate(5) == (1, 0) and ds.locate(20) == (2, 6)
    item = ds[7]  # episode 1 (length 9), step 2
    assert item["episode_index"] == 1 and item["frame_index"] == 2
    assert item["instruction"] == episodes[1].instruction
    assert item["images"]["wrist"].dtype == torch.uint8 and item["images"]["wrist"].shape == (32, 48, 3)
    np.testing.assert_array_equal(item["images"]["agentview"].numpy(), episodes[1].frames["agentview"][2])
    np.testing.assert_array_equal(item["state"].numpy(), episodes[1].state[2])
    np.testing.assert_array_equal(item["actions"].numpy(), episodes[1].action[2:6])
    assert item["action_mask"].all()
    last = ds[4]  # episode 0 (length 5), step 4: one real action, then the last one repeated
    np.testing.assert_array_equal(last["actions"].numpy(), np.repeat(episodes[0].action[4:5], 4, axis=0))
    assert last["action_mask"].tolist() == [True, False, False, False]
    with pytest.raises(IndexError):
        ds[21]


def test_stats_q01_q99(ds_root, episodes):
    stats = SFTDataset(ds_root).stats
    for name, arrays in (("action", [e.action for e in episodes]), ("state", [e.state for e in episodes])):
        x = np.concatenate(arrays).astype(np.float64)
        np.testing.assert_allclose(stats[name]["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats[name]["q99"], np.quantile(x, 0.99, axis=0), rtol=1e-12)
        assert stats[name]["q01"].shape == (x.shape[1],)


def test_dataloader_batches(ds_root):
    ds = SFTDataset(ds_root, chunk_size=3, cameras=["wrist"])
    batch = next(iter(DataLoader(ds, batch_size=5, shuffle=False)))
    assert batch["images"]["wrist"].shape == (5, 32, 48, 3) and "agentview" not in batch["images"]
    assert batch["actions"].shape == (5, 3, 7) and batch["action_mask"].shape == (5, 3)
    assert batch["state"].dtype == torch.float32 and len(batch["instruction"]) == 5
    with pytest.raises(ValueError, match="unknown cameras"):
        SFTDataset(ds_root, cameras=["top"])
