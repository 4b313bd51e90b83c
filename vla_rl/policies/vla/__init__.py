"""OpenVLA-style VLA: configuration, modeling and processor files (one folder per policy)."""
