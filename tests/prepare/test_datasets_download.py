"""``segkit prepare-data NAME`` downloading: served by an ``http.server`` on 127.0.0.1 (nothing leaves the machine).

Interrupted transfers resume, bad checksums leave nothing, and a failure says which files to fetch by hand.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import ThreadingHTTPServer

import pytest

import segkit.data.prepare.download as download_module
from segkit.data.prepare import get_preparer, prepare_dataset
from segkit.errors import DownloadError

from .test_datasets import ADE, ade_files, leftovers
from .test_download import Handler, ServerState


def ade_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in ade_files().items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def served(monkeypatch):
    """A server with the ADE-like zip, and the registered ``ade20k`` preparer pointed at it (sha1 of that zip)."""
    payload = ade_zip()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(files={f"/{ADE}.zip": payload})  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    preparer = get_preparer("ade20k")
    source = {"url": f"http://127.0.0.1:{httpd.server_address[1]}/{ADE}.zip", "filename": f"{ADE}.zip",
              "sha256": None, "sha1": hashlib.sha1(payload).hexdigest()}
    monkeypatch.setattr(preparer, "sources", [source])
    monkeypatch.setattr(preparer, "download_retries", 1)
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)
    try:
        yield preparer, httpd.state, payload  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_interrupted_once_resumes_and_prepares(served, tmp_path):
    _, state, payload = served
    state.cut_next = 1
    summary = prepare_dataset("ade20k", tmp_path / "data")
    assert (summary["train"], summary["val"], summary["source"]) == (3, 2, f"downloaded: {ADE}.zip")
    half = len(payload) // 2
    assert [r[1:] for r in state.requests] == [(None, 200), (f"bytes={half}-", 206)]
    assert leftovers(tmp_path / "data") == ["ADE20k"]  # the downloaded archive is removed once prepared


def test_download_that_keeps_failing_is_resumed_by_the_next_run(served, tmp_path):
    _, state, payload = served
    state.cut_next = 10
    with pytest.raises(DownloadError, match=r"(?s)failed after 2 attempts.*is kept and the next run resumes it\.\nTo supply the files by hand, download "
                                            r"ADEChallengeData2016\.zip .*--from-archive FOLDER/"):
        prepare_dataset("ade20k", tmp_path / "data")
    part = tmp_path / "data" / ".downloads" / "ade20k" / f"{ADE}.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < len(payload) and not (tmp_path / "data" / "ADE20k").exists()
    state.cut_next, state.requests[:] = 0, []
    assert prepare_dataset("ade20k", tmp_path / "data")["train"] == 3
    assert state.requests == [(f"/{ADE}.zip", f"bytes={kept}-", 206)]  # resumed where the last run stopped


def test_downloaded_file_with_a_bad_checksum_leaves_nothing(served, tmp_path, monkeypatch):
    preparer, _, _ = served
    monkeypatch.setattr(preparer, "sources", [{**preparer.sources[0], "sha1": "0" * 40}])
    with pytest.raises(DownloadError, match="checksum mismatch: expected sha1 0000"):
        prepare_dataset("ade20k", tmp_path / "data")
    assert leftovers(tmp_path / "data" / ".downloads" / "ade20k") == []
    assert not (tmp_path / "data" / "ADE20k").exists()


def test_offline_cityscapes_says_which_files_to_fetch_by_hand(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    preparer = get_preparer("cityscapes")
    monkeypatch.setattr(preparer, "sources", [{"url": f"http://127.0.0.1:{port}/CityScapes.zip",
                                               "filename": "CityScapes.zip", "sha256": None}])
    with pytest.raises(DownloadError) as info:
        prepare_dataset("cityscapes", tmp_path / "data")
    message = str(info.value)
    assert "CityScapes.zip + ... + CityScapes.z11" in message and "SegmentationBLWX/modelstore" in message
    assert "leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip" in message
    assert "https://www.cityscapes-dataset.com/downloads/" in message
    assert "segkit prepare-data cityscapes --from-archive FOLDER/CityScapes.zip" in message
