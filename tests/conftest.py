"""Shared fixtures: tiny random policies (fast on CPU) and single-threaded torch, so tests stay light."""

from __future__ import annotations

import socket

import pytest
import torch

from ponder.policy import ModelConfig, TinyPolicy

torch.set_num_threads(1)

TINY = ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=64)


def make_tiny_policy(seed: int = 0, std: float = 0.5) -> TinyPolicy:
    """A 1-layer float32 policy whose matrices are redrawn with a large `std`.

    The default init (std 0.02) makes an untrained model nearly uniform and its greedy output a
    repetition of the last prompt character; a large std gives peaked, varied, prompt-dependent
    outputs, so comparisons between decoding paths actually test something.
    """
    policy = TinyPolicy(TINY, seed=seed, dtype="float32", batch_size=512)
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in policy.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return policy


@pytest.fixture
def tiny_policy() -> TinyPolicy:
    return make_tiny_policy(0)


@pytest.fixture
def listener():
    """A local TCP server that untrusted code under test must not reach (the sandbox tests)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)  # a connection, if any, is queued by the time the run returns
    yield server
    server.close()
