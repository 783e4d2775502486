"""Triton GPU kernels, each beside its pure-torch reference in wmark (shipped as wmark.kernels)."""
