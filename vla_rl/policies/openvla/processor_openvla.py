"""OpenVLA's inputs and outputs: images and prompt in, action tokens out.

* Images: each camera resized to the backbone's side with PIL bicubic as OpenVLA's processor does (``resize-naive``
  straight to S x S; ``letterbox`` pads to a square with the mean colour first; ``resize-crop`` resizes the short
  side and crops the centre), kept as uint8. The per-backbone normalisation (ImageNet mean / std for DINOv2, 0.5 for
  SigLIP) is the model's first step, from pixels in [-1, 1], so that a rollout's stored uint8 images are inputs.
* Prompt: ``"In: What action should the robot take to {instruction}?\\nOut:"`` with the instruction lower-cased,
  the tokenizer's BOS first and Llama-2's empty token 29871 last (OpenVLA appends it when the tokenizer does not:
  its training prompts end with it), right-padded with ``pad_token_id`` to a fixed length.
* Actions: token id t -> bin index clip(V - t - 1, 0, 254) with V = text vocab size - pad_to_multiple_of (32000),
  -> the bin centre c, one of the 255 midpoints of linspace(-1, 1, 256); dims whose ``mask`` is set are
  un-normalised 0.5 (c + 1)(q99 - q01) + q01 (OFT adds 1e-8 to the span), the others (the gripper) stay c.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_rl.policies.openvla.configuration_openvla import EMPTY_TOKEN, PROMPT


class OpenVLAActionTokenizer:
    """Token ids (..., D) <-> actions (..., D) by OpenVLA's binning.

    Args:
        action_stats: the dataset's ``action`` norm stats (``q01``, ``q99``, optional ``mask``; D each).
        vocab_size: V, the tokenizer's vocabulary without the padding rows (32000 for Llama-2).
        n_bins: ``n_action_bins``; the action ids are the last n_bins below V.
        span_eps: added to q99 - q01 when un-normalising (OFT: 1e-8; OpenVLA: 0).
        gripper: ``raw`` or ``libero`` (binarise sign(2c - 1) and invert, as OpenVLA's LIBERO evaluation does).
        gripper_dim: the dim ``gripper`` applies to.
    """

    def __init__(self, action_stats: dict[str, Any], vocab_size: int, n_bins: int = 256, span_eps: float = 0.0,
                 gripper: str = "raw", gripper_dim: int = 6) -> None:
        self.q01 = np.asarray(action_stats["q01"], np.float64)
        self.q99 = np.asarray(action_stats["q99"], np.float64)
        self.mask = np.asarray(action_stats.get("mask", np.ones_like(self.q01, bool)), bool)
        if not self.q01.shape == self.q99.shape == self.mask.shape or self.q01.ndim != 1:
            raise ValueError(f"action stats q01 {self.q01.shape}, q99 {self.q99.shape}, mask {self.mask.shape} must "
                             "be equal 1-D shapes")
        self.dim, self.vocab_size, self.n_bins = len(self.q01), int(vocab_size), int(n_bins)
        self.offset = self.vocab_size - self.n_bins  # the first action id (31744)
        self.span_eps, self.gripper, self.gripper_dim = span_eps, gripper, gripper_dim
        if gripper == "libero" and not 0 <= gripper_dim < self.dim:
            raise ValueError(f"gripper_dim {gripper_dim} outside 0..{self.dim - 1}")
        edges = np.linspace(-1.0, 1.0, self.n_bins)
        self.centres = (edges[:-1] + edges[1:]) / 2.0  # 255 midpoints
        self.edges = edges

    def normalized(self, ids: np.ndarray) -> np.ndarray:
        """Token ids (..., D) -> bin centres in [-1, 1] (..., D)."""
        idx = np.clip(self.vocab_size - np.asarray(ids, np.int64) - 1, 0, len(self.centres) - 1)
        return self.centres[idx]

    def unnormalize(self, c: np.ndarray) -> np.ndarray:
        """Normalised actions (..., D) -> raw float32 (..., D), with the gripper convention applied."""
        span = self.q99 - self.q01 + self.span_eps
        a = np.where(self.mask, 0.5 * (c + 1.0) * span + self.q01, c)
        if self.gripper == "libero":  # [0, 1] -> [-1, 1], binarised, inverted (OpenVLA's LIBERO evaluation)
            a[..., self.gripper_dim] = -np.sign(2.0 * a[..., self.gripper_dim] - 1.0)
        return a.astype(np.float32)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Token ids (..., D) -> actions float32 (..., D)."""
        ids = np.asarray(ids, np.int64)
        if ids.shape[-1] != self.dim:
            raise ValueError(f"ids have {ids.shape[-1]} dims, the norm stats {self.dim}")
        return self.unnormalize(self.normalized(ids))

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions (..., D) -> token ids (..., D), as OpenVLA's training data: masked dims normalised to
        [-1, 1] by q01 / q99, clipped, digitised against the 256 edges, id = V - digit."""
        a = np.asarray(actions, np.float64)
        span = self.q99 - self.q01 + self.span_eps
        x = np.where(self.mask, 2.0 * (a - self.q01) / np.where(span > 0, span, 1.0) - 1.0, a)
        return self.vocab_size - np.digitize(np.clip(x, -1.0, 1.0), self.edges)

    def acting_dims(self) -> np.ndarray:
        """bool (D,): dims whose token changes the action (an un-normalised dim with q01 == q99 never does)."""
        return ~self.mask | (self.q99 - self.q01 > 1e-8)


class OpenVLAProcessor:
    """Env observations + instructions -> a `VLABatch` (pixels in [-1, 1], prompt ids, proprio) for the policy.

    Args:
        tokenizer: the checkpoint's tokenizer (Llama-2's).
        cameras: env cameras, in OFT's image order.
        image_size: the backbone's input side S.
        resize_strategy: OpenVLA's ``image_resize_strategy``.
        fill: letterbox colour, uint8 RGB (OpenVLA: the last backbone's mean x 255).
        max_prompt_tokens: the fixed prompt length.
        pad_id, bos_id: ``pad_token_id`` and the BOS id.
        state_stats: the dataset's ``proprio`` norm stats (None: no proprio).
    """

    def __init__(self, tokenizer, cameras: tuple[str, ...], image_size: int, resize_strategy: str,
                 fill: tuple[int, int, int], max_prompt_tokens: int, pad_id: int, bos_id: int,
                 state_stats: dict[str, Any] | None = None) -> None:
        if resize_strategy not in ("resize-naive", "letterbox", "resize-crop"):
            raise ValueError(f"image_resize_strategy {resize_strategy!r}; valid: resize-naive, letterbox, resize-crop")
        self.tokenizer, self.cameras, self.image_size = tokenizer, tuple(cameras), image_size
        self.resize_strategy, self.fill = resize_strategy, fill
        self.max_tokens, self.pad_id, self.bos_id = max_prompt_tokens, pad_id, bos_id
        self.state_stats = state_stats
        self._cache: dict[str, list[int]] = {}

    def prompt_ids(self, instruction: str) -> list[int]:
        """The prompt's ids: BOS, the tokenised prompt, 29871 last."""
        if instruction not in self._cache:
            ids = list(self.tokenizer(PROMPT.format(instruction=instruction.lower()))["input_ids"])
            if not ids or ids[0] != self.bos_id:
                ids = [self.bos_id, *ids]
            if ids[-1] != EMPTY_TOKEN:
                ids.append(EMPTY_TOKEN)
            if len(ids) > self.max_tokens:
                raise ValueError(f"the prompt for {instruction!r} has {len(ids)} tokens, over max_prompt_tokens "
                                 f"{self.max_tokens}; raise it (from_pretrained(..., max_prompt_tokens=N))")
            self._cache[instruction] = ids
        return self._cache[instruction]

    def tokenize(self, instructions: list[str]):
        """int64 ids and mask (B, max_prompt_tokens), right-padded."""
        import torch

        rows = [self.prompt_ids(t) for t in instructions]
        ids = [r + [self.pad_id] * (self.max_tokens - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (self.max_tokens - len(r)) for r in rows]
        return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

    def resize(self, img: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (S, S, 3) by the resize strategy (PIL bicubic, as torchvision on PIL images)."""
        from PIL import Image

        s = self.image_size
        if img.shape[:2] == (s, s):
            return img
        im = Image.fromarray(img)
        w, h = im.size
        if self.resize_strategy == "letterbox" and w != h:
            side = max(w, h)
            sq = Image.new("RGB", (side, side), self.fill)
            sq.paste(im, ((side - w) // 2, (side - h) // 2))
            im = sq
        if self.resize_strategy == "resize-crop" and w != h:
            scale = s / min(w, h)
            im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BICUBIC)
            left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
            return np.asarray(im.crop((left, top, left + s, top + s)))
        return np.asarray(im.resize((s, s), Image.BICUBIC))

    def images(self, obs: dict[str, np.ndarray]):
        """The cameras as uint8 (B, C, 3, S, S)."""
        import torch

        missing = [c for c in self.cameras if c not in obs]
        if missing:
            raise KeyError(f"observation lacks cameras {missing}; it has {sorted(obs)}")
        per_cam = [np.stack([self.resize(np.asarray(im, np.uint8)) for im in obs[c]]) for c in self.cameras]
        return torch.from_numpy(np.stack(per_cam, 1)).permute(0, 1, 4, 2, 3).contiguous()

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """Raw proprio (B, D) -> float32 (B, D): OFT's bounds-q99 normalisation (masked dims), clipped to [-1, 1]."""
        s = np.asarray(state, np.float64)
        lo, hi = np.asarray(self.state_stats["q01"], np.float64), np.asarray(self.state_stats["q99"], np.float64)
        mask = np.asarray(self.state_stats.get("mask", np.ones_like(lo, bool)), bool)
        if s.shape[-1] != len(lo):
            raise ValueError(f"state has {s.shape[-1]} dims, the proprio stats {len(lo)}")
        return np.clip(np.where(mask, 2.0 * (s - lo) / (hi - lo + 1e-8) - 1.0, s), -1.0, 1.0).astype(np.float32)

    def batch(self, images, instructions: list[str], state: np.ndarray | None = None):
        """uint8 images (B, C, 3, S, S) + instructions + raw state -> `VLABatch`."""
        import torch

        from vla_rl.policies.vla.modeling_vla import VLABatch

        ids, mask = self.tokenize(list(instructions))
        st = None
        if self.state_stats is not None:
            if state is None:
                raise ValueError("this policy reads proprio but the observation has no 'state'")
            st = torch.from_numpy(self.normalize_state(state))
        return VLABatch(images.float().div(127.5).sub(1.0), ids, mask, st)

    def __call__(self, obs: dict[str, np.ndarray], instructions: list[str]):
        return self.batch(self.images(obs), instructions, obs.get("state"))
