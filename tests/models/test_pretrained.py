"""Pretrained weights: local files, torch.hub's cache, failing fast offline, key reports."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest
import torch
from torch import nn

from segkit.errors import CheckpointError, DownloadError
from segkit.models import pretrained
from segkit.models.backbones import PRETRAINED_URLS, ResNet
from segkit.models.pretrained import LoadReport, hub_cache_path, load_pretrained, skip_loading

from .helpers import BN

URL = "https://download.example.org/weights/tiny-0123abcd.pth"


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_offline_fails_fast_naming_url_cache_path_and_alternative(no_network, hub_dir):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        load_pretrained(_net(), url=URL, path=None)
    assert time.monotonic() - start < 3
    message = str(info.value)
    cache_path = os.path.join(str(hub_dir), "checkpoints", "tiny-0123abcd.pth")
    assert URL in message and cache_path in message
    assert 'backbone.pretrained_model_path = "' in message


def test_unanswered_probe_gives_up_after_the_probe_timeout(monkeypatch, hub_dir):
    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(pretrained, "PROBE_TIMEOUT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="no answer from download.example.org:443 within 0.5 s"):
        load_pretrained(_net(), url=URL, path=None)
    assert time.monotonic() - start < 3


def test_resnet_pretrained_offline_fails_fast(no_network, hub_dir):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="resnet18-5c106cde.pth"):
        ResNet(structure_type="resnet18", outstride=32, norm_cfg=BN, pretrained=True)
    assert time.monotonic() - start < 5


def test_resnet_loads_official_file_from_the_hub_cache_without_network(no_network, hub_dir):
    source = ResNet(structure_type="resnet18", outstride=32, norm_cfg=BN, pretrained=False)
    state = {**source.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    cached = hub_cache_path(PRETRAINED_URLS["resnet18"])
    assert cached == os.path.join(str(hub_dir), "checkpoints", "resnet18-5c106cde.pth")
    os.makedirs(os.path.dirname(cached))
    torch.save(state, cached)
    loaded = ResNet(structure_type="resnet18", outstride=32, norm_cfg=BN, pretrained=True)
    assert torch.equal(loaded.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(loaded.bn1.running_var, source.bn1.running_var)


def test_pretrained_model_path_wins_over_the_url(tmp_path, no_network):
    source = ResNet(structure_type="resnet18conv3x3stem", outstride=8, norm_cfg=BN, pretrained=False)
    path = tmp_path / "v1c.pth"
    torch.save({"state_dict": source.state_dict(), "meta": {"epoch": 3}}, path)
    loaded = ResNet(structure_type="resnet18conv3x3stem", norm_cfg=BN, pretrained=True,
                    pretrained_model_path=str(path))
    assert torch.equal(loaded.stem[6].weight, source.stem[6].weight)


def test_missing_local_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_pretrained(_net(), url=URL, path=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("wrapper", ["state_dict", "model", None, "ddp"])
def test_wrapped_checkpoints_are_unwrapped(tmp_path, wrapper):
    source = _net()
    state = source.state_dict()
    if wrapper == "ddp":
        checkpoint = {f"module.{k}": v for k, v in state.items()}
    else:
        checkpoint = state if wrapper is None else {wrapper: state, "optimizer": {"lr": 0.1}}
    torch.save(checkpoint, tmp_path / "w.pth")
    target = _net()
    report = load_pretrained(target, url=None, path=str(tmp_path / "w.pth"))
    assert report.ok and torch.equal(target[0].weight, source[0].weight)


def test_report_lists_missing_unexpected_and_mismatched_keys(tmp_path, caplog):
    state = _net().state_dict()
    state["extra.weight"] = torch.zeros(2)
    state["0.weight"] = torch.zeros(4, 5, 3, 3)  # other shape: skipped, not an exception
    del state["1.bias"]
    torch.save(state, tmp_path / "w.pth")
    with caplog.at_level(logging.WARNING, logger="segkit.models"):
        report = load_pretrained(_net(), url=None, path=str(tmp_path / "w.pth"))
    assert report.unexpected_keys == ["extra.weight"]
    assert report.mismatched_keys == ["0.weight"]
    assert report.missing_keys == ["0.weight", "1.bias"]
    assert "extra.weight" in caplog.text and "1.bias" in caplog.text


def test_key_map_renames_and_drops(tmp_path):
    source = _net()
    torch.save({f"backbone_net.{k}": v for k, v in source.state_dict().items()}, tmp_path / "w.pth")
    target = _net()
    report = load_pretrained(target, url=None, path=str(tmp_path / "w.pth"), key_map={"backbone_net.": ""})
    assert report.ok and torch.equal(target[0].weight, source[0].weight)
    dropped = load_pretrained(_net(), url=None, path=str(tmp_path / "w.pth"),
                              key_map=lambda k: None if k.endswith("bias") else k.replace("backbone_net.", ""))
    assert dropped.missing_keys == ["0.bias", "1.bias"]


def test_download_goes_through_torch_hub_with_a_socket_timeout(monkeypatch, hub_dir):
    source = _net()
    seen = {}

    def fake_download(url, **kwargs):
        seen.update(url=url, timeout=socket.getdefaulttimeout(), weights_only=kwargs.get("weights_only"))
        return source.state_dict()

    monkeypatch.setattr(pretrained, "_probe", lambda url, timeout: None)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    target = _net()
    report = load_pretrained(target, url=URL, path=None)
    assert report.ok and seen == {"url": URL, "timeout": pretrained.DOWNLOAD_TIMEOUT_S, "weights_only": True}
    assert socket.getdefaulttimeout() is None
    assert torch.equal(target[0].weight, source[0].weight)


def test_skip_loading_touches_nothing(no_network, hub_dir):
    with skip_loading():
        report = load_pretrained(_net(), url=URL, path=None)
    assert isinstance(report, LoadReport) and report.skipped


def _serve(directory):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_with_a_hash_in_its_name_is_verified(tmp_path, hub_dir):
    import hashlib

    torch.save(_net().state_dict(), tmp_path / "w.pth")
    digest = hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()
    (tmp_path / f"good-{digest[:8]}.pth").write_bytes((tmp_path / "w.pth").read_bytes())
    (tmp_path / "bad-deadbeef.pth").write_bytes((tmp_path / "w.pth").read_bytes())
    server = _serve(tmp_path)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert load_pretrained(_net(), url=f"{base}/good-{digest[:8]}.pth", path=None).ok
        with pytest.raises(DownloadError, match="checksum"):
            load_pretrained(_net(), url=f"{base}/bad-deadbeef.pth", path=None)
        assert not os.path.exists(hub_cache_path(f"{base}/bad-deadbeef.pth"))
    finally:
        server.shutdown()
