"""Policies: the OpenVLA-style action-token VLA (`vla`) and, later, text LMs."""
