"""Trainers: SFT on demonstrations and (one) GRPO trainer for both modalities."""
