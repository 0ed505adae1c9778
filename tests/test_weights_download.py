"""Downloading the official torchvision checkpoints (attr2gender.models.weights), against a local server.

Nothing here reaches the internet: the files come from an HTTP server on 127.0.0.1, the base URL is
redirected with $ATTR2GENDER_WEIGHTS_URL, and TORCH_HOME points into tmp_path so the real torch hub
cache is never read or written.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from attr2gender.errors import WeightsNotFoundError
from attr2gender.models import weights as W

OFFICIAL_RESNET18 = "resnet18-f37072fd.pth"


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}, buffer)
    return buffer.getvalue()


FAKE_BYTES = _checkpoint_bytes()
FAKE_PREFIX = hashlib.sha256(FAKE_BYTES).hexdigest()[:8]
FAKE_NAME = f"fake-{FAKE_PREFIX}.pth"  # a torchvision-style name whose prefix is really its hash


class Server:
    """Files by URL path; ``requests`` records every path asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncate_to: int | None = None  # send fewer bytes than Content-Length announces
        self.stall_s: float = 0.0  # send the headers, then nothing for this long
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.stall_s:
                    time.sleep(server.stall_s)
                self.wfile.write(body if server.truncate_to is None else body[: server.truncate_to])

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a stalled handler must not hold up shutdown
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty $ATTR2GENDER_WEIGHTS_DIR and TORCH_HOME; downloads allowed whatever the CI sets."""
    weights_dir, torch_home = tmp_path / "weights", tmp_path / "torch_home"
    weights_dir.mkdir()
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(weights_dir))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for env in (*W.OFFLINE_ENVS, W.WEIGHTS_URL_ENV):
        monkeypatch.delenv(env, raising=False)
    return weights_dir, torch_home / "hub" / "checkpoints"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ download_checkpoint


def test_download_checkpoint_downloads_and_verifies(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    path = W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert path == hub / FAKE_NAME and path.read_bytes() == FAKE_BYTES
    assert _leftovers(hub) == [FAKE_NAME]  # the .part file was renamed, not copied
    assert torch.equal(W.load_state_dict_file(path)["layer.weight"], torch.arange(6.0).reshape(2, 3))


def test_download_checkpoint_prefix_from_the_name_and_explicit(server, dirs):
    _, hub = dirs
    assert W.sha256_prefix_of(OFFICIAL_RESNET18) == "f37072fd"
    assert W.sha256_prefix_of("efficientnet-lite0-57934424.pth") == "57934424"
    assert W.sha256_prefix_of("model.pth") is None
    server.files["/models/plain.pth"] = FAKE_BYTES
    full = hashlib.sha256(FAKE_BYTES).hexdigest()
    assert (
        W.download_checkpoint(server.base + "plain.pth", hub, expected_prefix=full).read_bytes() == FAKE_BYTES
    )


def test_download_checkpoint_refuses_an_unverifiable_name_before_connecting(server, dirs):
    _, hub = dirs
    with pytest.raises(ValueError, match="SHA-256 prefix"):
        W.download_checkpoint(server.base + "model.pth", hub)
    assert server.requests == [] and not hub.exists()


def test_wrong_hash_is_refused_and_removed(server, dirs):
    _, hub = dirs
    name = "fake-00000000.pth"
    server.files[f"/models/{name}"] = FAKE_BYTES
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + name, hub)
    msg = str(excinfo.value)
    assert "SHA-256 mismatch" in msg and server.base + name in msg and str(hub) in msg
    assert _leftovers(hub) == []


def test_truncated_download_is_refused_and_removed(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.truncate_to = 10
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert FAKE_NAME in str(excinfo.value)
    assert _leftovers(hub) == []


def test_a_stalled_server_times_out(server, dirs, monkeypatch):
    _, hub = dirs
    monkeypatch.setattr(W, "DOWNLOAD_TIMEOUT_S", 0.3)  # the library's 30 s, shortened for the test
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.stall_s = 3.0
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match=r"no response within 0\.3 s"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert time.perf_counter() - start < 2.5
    assert _leftovers(hub) == []


def test_http_error_names_the_status(server, dirs):
    _, hub = dirs
    with pytest.raises(WeightsNotFoundError, match="HTTP 404"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert not hub.exists()


def test_interrupted_download_leaves_no_partial_file(server, dirs, monkeypatch):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES

    class InterruptingBar:
        def __init__(self, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, n):
            assert any(p.suffix == ".part" for p in hub.iterdir())  # bytes were being written
            raise KeyboardInterrupt

    monkeypatch.setattr(W, "_progress", InterruptingBar)
    with pytest.raises(KeyboardInterrupt):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert _leftovers(hub) == []


# ------------------------------------------------------------------------------ weights="imagenet"


def test_imagenet_downloads_into_the_hub_cache_once(server, dirs, monkeypatch):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    monkeypatch.setitem(
        W.TORCHVISION_CHECKPOINTS,
        "resnet18",
        W.TorchvisionCheckpoint((f"https://download.pytorch.org/models/{FAKE_NAME}",)),
    )
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    path = W.locate_weights("resnet18", "imagenet")
    assert path == hub / FAKE_NAME and path.read_bytes() == FAKE_BYTES
    assert server.requests == [f"/models/{FAKE_NAME}"]
    # The cached file is found the second time: no new request.
    assert W.locate_weights("resnet18", "imagenet") == path and len(server.requests) == 1
    state, source = W.resolve_state_dict("resnet18", "imagenet")
    assert source == str(path) and set(state) == {"layer.weight", "layer.bias"}


def test_imagenet_prefers_local_files_to_a_download(server, dirs, monkeypatch):
    weights_dir, _ = dirs
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    (weights_dir / OFFICIAL_RESNET18).write_bytes(FAKE_BYTES)
    assert W.locate_weights("resnet18", "imagenet") == weights_dir / OFFICIAL_RESNET18
    assert server.requests == []


def test_imagenet_official_name_with_wrong_content_is_refused(server, dirs, monkeypatch):
    weights_dir, hub = dirs
    server.files[f"/models/{OFFICIAL_RESNET18}"] = FAKE_BYTES  # not the real file: its hash differs
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base.rstrip("/"))  # with or without the final slash
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    msg = str(excinfo.value)
    assert server.requests == [f"/models/{OFFICIAL_RESNET18}"]
    assert "SHA-256 mismatch" in msg and "f37072fd" in msg
    assert server.base + OFFICIAL_RESNET18 in msg  # the URL tried
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg  # the official one
    assert str(hub) in msg and str(weights_dir) in msg and "efficientnet_lite0" in msg
    assert _leftovers(hub) == []


def test_refused_connection_gives_the_clear_error(dirs, monkeypatch):
    weights_dir, hub = dirs
    base = f"http://127.0.0.1:{_closed_port()}/models/"
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, base)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    assert time.perf_counter() - start < 5
    msg = str(excinfo.value)
    assert "Connection refused" in msg or "ConnectionRefusedError" in msg
    assert OFFICIAL_RESNET18 in msg and base + OFFICIAL_RESNET18 in msg
    assert str(hub) in msg and str(weights_dir) in msg
    assert isinstance(excinfo.value, FileNotFoundError)
    assert _leftovers(hub) == []


@pytest.mark.parametrize(("env", "value"), [("ATTR2GENDER_OFFLINE", "1"), ("HF_HUB_OFFLINE", "True")])
def test_offline_never_opens_a_socket(server, dirs, monkeypatch, env, value):
    weights_dir, hub = dirs
    server.files[f"/models/{OFFICIAL_RESNET18}"] = FAKE_BYTES
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    monkeypatch.setenv(env, value)
    calls: list[str] = []

    def forbidden(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"socket use while offline: {name}")

        return record

    monkeypatch.setattr(socket.socket, "connect", forbidden("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", forbidden("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", forbidden("getaddrinfo"))
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    with pytest.raises(WeightsNotFoundError, match="downloads are disabled"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    msg = str(excinfo.value)
    assert calls == [] and server.requests == []
    assert f"downloads are disabled ({env}={value})" in msg
    assert OFFICIAL_RESNET18 in msg and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(hub) in msg and str(weights_dir) in msg
    assert not hub.exists()


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("1", True), ("yes", True), ("ON", True), ("0", False), ("", False), ("no", False)],
)
def test_offline_values(monkeypatch, value, disabled):
    for env in W.OFFLINE_ENVS:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("ATTR2GENDER_OFFLINE", value)
    assert (W.downloads_disabled_by() is not None) is disabled
