"""OpenVLA and OpenVLA-OFT checkpoints (Hugging Face folders) as a policy: configuration, the timm ViTs in plain
torch, modeling, processor, and the weight files' layout (issue 33)."""
