"""The downloader against a local HTTP server on 127.0.0.1 (never the internet): Google Drive's
confirm step and quota page, resume after cancel or interruption, checksum, atomic rename, registry."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import urllib.parse

import pytest

from engine import download
from engine.download import DownloadCancelled, DownloadError, KnownModel, download_file

PAYLOAD = bytes(range(256)) * (3 * 4096 + 17)  # about 3 MiB: several 1 MiB chunks
SMALL = b"\x80\x04model bytes" * 1000

WARNING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/gd/download" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="abc-123"></form>
</body></html>"""

OLD_WARNING_PAGE = """<html><head><title>Google Drive - Virus scan warning</title></head><body>
<a id="uc-download-link" href="/old/uc?export=download&amp;confirm=TOKEN9&amp;id={id}">Download anyway</a>
</body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Sorry, you can't view or download this file at this time.</p><p>Too many users have viewed or downloaded
this file recently. Please try accessing the file again later.</p></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []
    options: dict[str, object] = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _html(self, page: str, status: int = 200, cookie: str | None = None) -> None:
        body = page.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def _file(self, data: bytes, content_type: str = "application/octet-stream") -> None:
        rng = self.headers.get("Range")
        start = 0
        if rng and not self.options.get("ignore_range"):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = self.options.pop("cut_after", None)
        if cut is not None:  # drop the connection mid-body once
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        self.log.append((self.path, self.headers.get("Range")))
        if url.path.startswith("/files/"):
            name = url.path[len("/files/") :]
            if name not in self.files:
                self.send_error(404, "Not Found")
                return
            return self._file(self.files[name])
        if url.path == "/gd/uc":  # current Google Drive: a warning page with a download form
            return self._html(WARNING_PAGE.format(id=q["id"]))
        if url.path == "/gd/download":
            if q.get("confirm") != "t" or q.get("uuid") != "abc-123":
                return self._html("<html><title>bad</title></html>", 400)
            return self._file(self.files[q["id"]])
        if url.path == "/old/uc":  # older Google Drive: cookie + confirm token in the link
            if q.get("confirm") == "TOKEN9" and "download_warning" in (self.headers.get("Cookie") or ""):
                return self._file(self.files[q["id"]])
            return self._html(OLD_WARNING_PAGE.format(id=q["id"]), cookie="download_warning_13=TOKEN9; Path=/")
        if url.path == "/quota/uc":
            return self._html(QUOTA_PAGE)
        if url.path == "/disguised":  # an error page sent as a binary file
            return self._file(QUOTA_PAGE.encode(), "application/octet-stream")
        self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server():
    _Handler.files = {"model.pkl": PAYLOAD, "small.pt": SMALL}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _Handler.log.clear()
    _Handler.options.clear()


def test_plain_download_with_progress_and_checksum(server, tmp_path):
    seen = []
    dest = tmp_path / "sub" / "model.pkl"
    got = download_file(
        f"{server}/files/model.pkl",
        dest,
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 3
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.pkl"]


def test_cancel_keeps_part_and_resume_uses_range(server, tmp_path):
    dest = tmp_path / "model.pkl"
    stop = threading.Event()
    with pytest.raises(DownloadCancelled):
        download_file(f"{server}/files/model.pkl", dest, progress=lambda d, t: stop.set(), cancel=stop)
    part = dest.with_name("model.pkl.part")
    assert not dest.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size
    download_file(f"{server}/files/model.pkl", dest, cancel=lambda: False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert _Handler.log[-1] == ("/files/model.pkl", f"bytes={kept}-")


def test_interrupted_download_resumes(server, tmp_path):
    dest = tmp_path / "model.pkl"
    _Handler.options["cut_after"] = 1_500_000
    with pytest.raises(DownloadError, match="interrupted.*again to resume"):
        download_file(f"{server}/files/model.pkl", dest)
    assert dest.with_name("model.pkl.part").stat().st_size == 1_500_000
    download_file(f"{server}/files/model.pkl", dest)
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "small.pt"
    dest.with_name("small.pt.part").write_bytes(b"stale partial bytes")
    _Handler.options["ignore_range"] = True
    download_file(f"{server}/files/small.pt", dest)
    assert dest.read_bytes() == SMALL


def test_oversized_partial_file_is_discarded(server, tmp_path):
    dest = tmp_path / "small.pt"
    dest.with_name("small.pt.part").write_bytes(b"x" * (len(SMALL) + 10))
    download_file(f"{server}/files/small.pt", dest)
    assert dest.read_bytes() == SMALL


def test_checksum_mismatch_deletes_the_file(server, tmp_path):
    dest = tmp_path / "small.pt"
    with pytest.raises(DownloadError, match="wrong SHA-256"):
        download_file(f"{server}/files/small.pt", dest, sha256="0" * 64)
    assert not dest.exists() and not dest.with_name("small.pt.part").exists()


@pytest.mark.parametrize("route", ["gd", "old"])
def test_google_drive_confirm_step(server, tmp_path, route):
    dest = tmp_path / "model.pkl"
    download_file(f"{server}/{route}/uc?export=download&id=model.pkl", dest)
    assert dest.read_bytes() == PAYLOAD
    assert len(_Handler.log) == 2


def test_quota_page_is_reported_and_nothing_is_stored(server, tmp_path):
    dest = tmp_path / "sg3-r-ffhq-1024.pt"
    with pytest.raises(DownloadError) as err:
        download_file(f"{server}/quota/uc?export=download&id=x", dest, label="sg3-r-ffhq-1024")
    msg = str(err.value)
    assert "quota" in msg and "sg3-r-ffhq-1024" in msg and "browser" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_web_page_sent_as_binary_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="quota"):
        download_file(f"{server}/disguised", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_http_and_network_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server}/files/nope.pkl", tmp_path / "nope.pkl")
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file("http://127.0.0.1:9/x.pkl", tmp_path / "x.pkl", timeout=5)  # discard port: refused


def test_registry_and_cache_dir(server, tmp_path, monkeypatch):
    ngc = [m for m in download.KNOWN_MODELS.values() if m.url.startswith(download.NGC_BASE_URL)]
    assert len(ngc) == 12
    assert (
        download.find_model("stylegan3-r-ffhqu-256x256").url == download.NGC_BASE_URL + "stylegan3-r-ffhqu-256x256.pkl"
    )
    assert download.find_model("sg3-r-ffhq-1024.pt").url.endswith("id=13q6m-bpe3Ws9en9y45JEx2PHQirStt8N")
    assert download.find_model("RESTYLE_PSP_FFHQ").filename == "restyle_pSp_ffhq.pt"
    with pytest.raises(DownloadError, match="not a known model"):
        download.find_model("stylegan9")

    monkeypatch.setenv("CHARM_MODELS_DIR", str(tmp_path / "cache"))
    assert download.models_dir() == tmp_path / "cache"
    monkeypatch.setitem(
        download.KNOWN_MODELS,
        "tiny-test",
        KnownModel(
            "tiny-test",
            "tiny/small.pt",
            f"{server}/files/small.pt",
            "generator",
            "test file",
            sha256=hashlib.sha256(SMALL).hexdigest(),
        ),
    )
    path = download.ensure_model("tiny-test")
    assert path == tmp_path / "cache" / "tiny" / "small.pt" and path.read_bytes() == SMALL
    n = len(_Handler.log)
    assert download.ensure_model("tiny-test") == path and len(_Handler.log) == n  # cached: no request
    monkeypatch.delenv("CHARM_MODELS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.models_dir() == tmp_path / "xdg" / "charm-studio" / "models"
    assert os.fspath(download.model_path("sg3-r-ffhq-1024")).endswith("sg3-r-ffhq-1024.pt")
