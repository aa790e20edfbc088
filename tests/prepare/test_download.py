"""download(): checksums, resume with Range, restart when Range is ignored, fast failure offline.

Files are served by an ``http.server`` on 127.0.0.1 in a thread; nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import segkit.data.prepare.download as download_module
from segkit.data.prepare.download import download
from segkit.errors import DownloadError

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    files: dict[str, bytes]
    honour_range: bool = True
    cut_next: int = 0  # this many replies send half their body and close
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)


class Handler(BaseHTTPRequestHandler):
    """Serves ``state.files``; honours ``Range: bytes=N-`` unless told not to; can cut replies short."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        data = state.files.get(self.path)
        wanted = self.headers.get("Range")
        if data is None:
            state.requests.append((self.path, wanted, 404))
            self.send_error(404)
            return
        start = int(re.match(r"bytes=(\d+)-", wanted).group(1)) if wanted and state.honour_range else 0
        if start >= len(data) > 0:
            state.requests.append((self.path, wanted, 416))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        body = data[start:]
        state.requests.append((self.path, wanted, 206 if start else 200))
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_next > 0:
            state.cut_next -= 1
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(files={"/data.tar.gz": PAYLOAD})  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_retry_sleep(monkeypatch):
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)


def test_download_with_good_checksum(server, tmp_path):
    base, state = server
    seen = []
    dest = download(f"{base}/data.tar.gz", tmp_path / "d" / "data.tar.gz", sha256=PAYLOAD_SHA,
                    progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.tar.gz"]  # no .part left
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    # already there with the right checksum: no second request
    download(f"{base}/data.tar.gz", dest, sha256=PAYLOAD_SHA.upper())
    assert len(state.requests) == 1


def test_bad_checksum_leaves_nothing(server, tmp_path):
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz", sha256=wrong)
    assert wrong in str(info.value) and PAYLOAD_SHA in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    base, state = server
    state.cut_next = 1
    dest = download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz", sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert state.requests == [("/data.tar.gz", None, 200), ("/data.tar.gz", f"bytes={half}-", 206)]


def test_restarts_when_the_server_ignores_range(server, tmp_path):
    base, state = server
    state.honour_range, state.cut_next = False, 1
    dest = download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz", sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert [r[1:] for r in state.requests] == [(None, 200), (f"bytes={len(PAYLOAD) // 2}-", 200)]


def test_complete_part_file_is_accepted_on_416(server, tmp_path):
    base, state = server
    (tmp_path / "data.tar.gz.part").write_bytes(PAYLOAD)
    dest = download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz", sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and [r[2] for r in state.requests] == [416]


def test_gives_up_after_retries_and_keeps_the_part_file(server, tmp_path):
    base, state = server
    state.cut_next = 10
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz", retries=1)
    assert [p.name for p in tmp_path.iterdir()] == ["data.tar.gz.part"]  # the next run resumes it
    state.cut_next = 0
    assert download(f"{base}/data.tar.gz", tmp_path / "data.tar.gz").read_bytes() == PAYLOAD


def test_http_404_fails_without_retrying(server, tmp_path):
    base, state = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing.zip", tmp_path / "missing.zip")
    assert len(state.requests) == 1
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_fails_fast_with_a_hint(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/ADE20k.tar.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "ADE20k.tar.gz", dataset="ade20k")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert url in message and "segkit prepare-data ade20k --from-archive PATH" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux dropping SYNs to a full backlog")
def test_unanswered_connect_times_out_quickly(tmp_path):
    """A listening socket whose accept queue is full never completes a handshake: only the connect timeout ends it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for sock in fillers:
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
            start = time.monotonic()
            with pytest.raises(DownloadError, match="--from-archive"):
                download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", connect_timeout=0.5, timeout=30)
            assert time.monotonic() - start < 5
        finally:
            for sock in fillers:
                sock.close()
