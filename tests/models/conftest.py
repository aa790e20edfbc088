"""Fixtures for the model tests: no network, a private torch.hub cache."""

from __future__ import annotations

import socket

import pytest
import torch


@pytest.fixture
def no_network(monkeypatch):
    """Make every DNS lookup and TCP connect fail at once, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def hub_dir(tmp_path):
    """A private, empty torch.hub directory (restored afterwards)."""
    previous = torch.hub.get_dir()
    directory = tmp_path / "hub"
    torch.hub.set_dir(str(directory))
    try:
        yield directory
    finally:
        torch.hub.set_dir(previous)
