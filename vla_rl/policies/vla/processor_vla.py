"""Action tokenization as in OpenVLA: per-dimension normalisation, 256 bins, reserved vocab ids.

Continuous dims are mapped to [-1, 1] with the dataset's 1st/99th percentiles (q01 -> -1, q99 -> +1),
clipped, and cut into ``n_bins`` equal bins; a token is ``action_token_offset + bin``. Decoding returns
the bin centre mapped back to the raw range, so the round-trip error is at most half a bin
(``(q99 - q01) / n_bins / 2`` in raw units) for values inside [q01, q99].
The gripper is binary: its sign picks the first or the last bin and decodes to exactly -1 or +1.
OpenVLA uses 256 bins from ``np.linspace(-1, 1, 256)`` edges (255 usable bins); we use 256 equal bins
so every reserved id is reachable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NormStats:
    """Per-dimension action statistics; ``q01``/``q99`` float32 (D,). Saved with the checkpoint."""

    q01: np.ndarray
    q99: np.ndarray

    def __post_init__(self) -> None:
        self.q01 = np.asarray(self.q01, dtype=np.float32)
        self.q99 = np.asarray(self.q99, dtype=np.float32)
        if self.q01.shape != self.q99.shape or self.q01.ndim != 1:
            raise ValueError(f"q01 {self.q01.shape} and q99 {self.q99.shape} must be equal 1-D shapes")

    @classmethod
    def from_actions(cls, actions: np.ndarray) -> NormStats:
        """From an array (..., D) of raw actions."""
        a = np.asarray(actions, dtype=np.float64).reshape(-1, np.shape(actions)[-1])
        return cls(np.quantile(a, 0.01, axis=0), np.quantile(a, 0.99, axis=0))

    def to_dict(self) -> dict[str, list[float]]:
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> NormStats:
        return cls(np.array(d["q01"]), np.array(d["q99"]))


class ActionTokenizer:
    """Raw actions (..., D) <-> token ids (..., D) in ``[offset, offset + n_bins)``.

    Args:
        stats: q01/q99 per dim.
        action_token_offset: vocab id of bin 0 (OpenVLA reserves the last 256 ids of the vocabulary).
        n_bins: bins per dimension.
        binary_dims: indices treated as binary (sign), e.g. the gripper (-1 open, +1 closed).
    """

    def __init__(self, stats: NormStats, action_token_offset: int, n_bins: int = 256,
                 binary_dims: tuple[int, ...] = (6,)) -> None:
        self.stats = stats
        self.offset = int(action_token_offset)
        self.n_bins = int(n_bins)
        self.dim = len(stats.q01)
        self.binary = np.zeros(self.dim, dtype=bool)
        for d in binary_dims:
            if not 0 <= d < self.dim:
                raise ValueError(f"binary dim {d} outside 0..{self.dim - 1}")
            self.binary[d] = True
        span = stats.q99 - stats.q01
        self.constant = span <= 1e-8  # (D,) dims the data held fixed: every bin decodes to q01
        # A constant dimension would divide by zero: give it a unit span.
        self._span = np.where(self.constant, 1.0, span).astype(np.float64)
        self.centres = (np.arange(self.n_bins) + 0.5) / self.n_bins * 2.0 - 1.0  # in [-1, 1]

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Raw (..., D) -> [-1, 1], clipped."""
        a = np.asarray(actions, dtype=np.float64)
        return np.clip(2.0 * (a - self.stats.q01) / self._span - 1.0, -1.0, 1.0)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) + 1.0) / 2.0 * self._span + self.stats.q01

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions float (..., D) -> int64 token ids (..., D)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1] != self.dim:
            raise ValueError(f"actions have {a.shape[-1]} dims, the tokenizer was built for {self.dim}")
        if not np.isfinite(a).all():
            raise ValueError("actions contain NaN or inf")
        x = self.normalize(a)
        bins = np.clip(np.floor((x + 1.0) / 2.0 * self.n_bins), 0, self.n_bins - 1).astype(np.int64)
        binary_bins = np.where(a > 0, self.n_bins - 1, 0)
        bins = np.where(self.binary, binary_bins, bins)
        return bins + self.offset

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids (..., D) -> raw actions float32 (..., D) at the bin centres (binary dims: +-1)."""
        t = np.asarray(tokens, dtype=np.int64) - self.offset
        if t.size and (t.min() < 0 or t.max() >= self.n_bins):
            raise ValueError(f"token ids outside the action range [{self.offset}, {self.offset + self.n_bins})")
        raw = self.unnormalize(self.centres[t])
        binary = np.where(t >= self.n_bins // 2, 1.0, -1.0)
        return np.where(self.binary, binary, raw).astype(np.float32)

    def acting_dims(self) -> np.ndarray:
        """bool (D,): the dims whose token changes the decoded action. A dim the data held constant (q01 == q99)
        decodes to that constant from every bin; binary dims always act (their bin's half picks the sign)."""
        return self.binary | ~self.constant

    def bin_width(self) -> np.ndarray:
        """Raw width of one bin per dim (D,)."""
        return (self._span * 2.0 / self.n_bins).astype(np.float32)


class VLAProcessor:
    """Env observations + instructions -> a `VLABatch` for the policy.

    Args:
        tokenizer: the Hugging Face tokenizer saved with the checkpoint.
        cameras: camera keys to feed, in order.
        image_size: the vision encoder's input side (images of another size are resized bilinearly).
        max_instruction_tokens: instructions are truncated / padded to this many tokens.
        state_stats: q01/q99 of the proprio state, mapped to [-1, 1] (None: no proprio).
    """

    def __init__(self, tokenizer, cameras: tuple[str, ...], image_size: int, max_instruction_tokens: int,
                 state_stats: NormStats | None = None) -> None:
        self.tokenizer = tokenizer
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.max_tokens = max_instruction_tokens
        self.state_stats = state_stats
        self._cache: dict[str, tuple[list[int], list[int]]] = {}

    def tokenize(self, instructions: list[str]):
        """int64 ids and mask (B, max_instruction_tokens), right-padded; cached per distinct text."""
        import torch

        ids, mask = [], []
        for text in instructions:
            if text not in self._cache:
                enc = self.tokenizer(text.lower().strip(), truncation=True, max_length=self.max_tokens)["input_ids"]
                pad = self.max_tokens - len(enc)
                self._cache[text] = (enc + [self.tokenizer.pad_token_id] * pad, [1] * len(enc) + [0] * pad)
            i, m = self._cache[text]
            ids.append(i)
            mask.append(m)
        return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

    def __call__(self, obs: dict[str, np.ndarray], instructions: list[str]):
        """obs: uint8 (B, H, W, 3) per camera and float (B, D) ``state``; returns a `VLABatch`."""
        return self.batch(self.images(obs), instructions, obs.get("state"))

    def images(self, obs: dict[str, np.ndarray]):
        """The policy's cameras as uint8 (B, C, 3, S, S), resized (bilinear, antialiased) to its input size."""
        import torch

        missing = [c for c in self.cameras if c not in obs]
        if missing:
            raise KeyError(f"observation lacks cameras {missing}; it has {sorted(obs)}")
        imgs = np.stack([obs[c] for c in self.cameras], 1)  # (B, C, H, W, 3)
        if imgs.dtype != np.uint8 or imgs.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (B, H, W, 3), got {imgs.dtype} {imgs.shape[2:]}")
        return resize_images(torch.from_numpy(imgs).permute(0, 1, 4, 2, 3), self.image_size)

    def batch(self, images, instructions: list[str], state: np.ndarray | None = None):
        """uint8 images (B, C, 3, S, S) + instructions + raw state (B, D) -> `VLABatch` (pixels in [-1, 1])."""
        import torch

        from vla_rl.policies.vla.modeling_vla import VLABatch

        ids, mask = self.tokenize(list(instructions))
        st = None
        if self.state_stats is not None:
            if state is None:
                raise ValueError("this policy reads proprio state but the observation has no 'state'")
            st = torch.from_numpy(self.normalize_state(np.asarray(state)))
        return VLABatch(images.float().div(127.5).sub(1.0), ids, mask, st)

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """float (B, D) -> float32 (B, D): q01 -> -1, q99 -> +1 (not clipped)."""
        s = np.asarray(state, dtype=np.float64)
        span = np.maximum(self.state_stats.q99 - self.state_stats.q01, 1e-6)
        return (2.0 * (s - self.state_stats.q01) / span - 1.0).astype(np.float32)


def resize_images(x, size: int):
    """uint8 (..., 3, H, W) -> uint8 (..., 3, size, size), bilinear with antialiasing; a no-op at size."""
    import torch
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    lead = x.shape[:-3]
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]).float(), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).reshape(*lead, 3, size, size)
