"""A loopback HTTP server that serves model files the way their real hosts do (tests never use the internet).

Routes:

- ``/<file name in the model cache>``: what ``CHARM_MODEL_MIRROR=BASE`` asks for;
- ``/v2/models/nvidia/research/stylegan3/versions/1/files/<name>.pkl``: NVIDIA NGC's shape;
- ``/uc?export=download&id=<id>``: Google Drive's shape: a virus-scan warning page whose form leads to
  ``/download?id=..&confirm=t&uuid=..``, which sends the file.

Per-file behaviours (``mirror.behaviour[filename] = ...``): ``"confirm"`` (the mirror route answers with
Drive's warning page first), ``"quota"`` (Drive's quota page instead of the file), ``"drop_once"`` (the
first response is cut half-way; Range requests resume), ``"fail"`` (HTTP 503). ``mirror.requests``
records (path, Range header) of every request; :meth:`ModelMirror.official_urls` gives the registry
with its hosts replaced by this server (paths kept) for monkeypatching.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import urllib.parse
from types import TracebackType

from engine.download import GDRIVE_URL, KNOWN_MODELS, NGC_BASE_URL, KnownModel

WARNING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/download" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-42"></form>
</body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Sorry, you can't view or download this file at this time.</p><p>Too many users have viewed or downloaded
this file recently. Please try accessing the file again later.</p></body></html>"""


class ModelMirror:
    """``with ModelMirror() as m: m.add(filename, data); os.environ['CHARM_MODEL_MIRROR'] = m.base``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # file name in the model cache -> bytes
        self.behaviour: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._ids = {m.url.rsplit("id=", 1)[-1]: m.filename for m in KNOWN_MODELS.values() if "id=" in m.url}
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                mirror._serve(self)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hangs up mid-file (a cancelled download) is expected here

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ModelMirror:
        self._thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, filename: str, data: bytes, behaviour: str | None = None) -> None:
        self.files[filename] = data
        if behaviour:
            self.behaviour[filename] = behaviour

    def official_urls(self) -> dict[str, KnownModel]:
        """KNOWN_MODELS with NGC's and Drive's hosts replaced by this server."""
        out = {}
        for name, m in KNOWN_MODELS.items():
            url = m.url.replace(NGC_BASE_URL, f"{self.base}/v2/models/nvidia/research/stylegan3/versions/1/files/")
            url = url.replace(GDRIVE_URL, f"{self.base}/uc")
            out[name] = dataclasses.replace(m, url=url)
        return out

    def requests_for(self, filename: str) -> list[tuple[str, str | None]]:
        quoted = urllib.parse.quote(filename)
        return [r for r in self.requests if r[0].endswith(quoted) or r[0].endswith(filename)]

    # -- serving ------------------------------------------------------------------------------------

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with self.lock:
            self.requests.append((h.path, h.headers.get("Range")))
        path = urllib.parse.unquote(url.path)
        if path == "/uc":
            name = self._ids.get(q.get("id", ""))
            if name is None or name not in self.files:
                return h.send_error(404, "Not Found")
            if self.behaviour.get(name) == "quota":
                return self._html(h, QUOTA_PAGE)
            return self._html(h, WARNING_PAGE.format(id=q["id"]))
        if path == "/download":
            name = self._ids.get(q.get("id", ""))
            if q.get("confirm") != "t" or q.get("uuid") != "u-42" or name not in self.files:
                return self._html(h, "<html><title>bad request</title></html>", 400)
            return self._file(h, name)
        ngc = "/v2/models/nvidia/research/stylegan3/versions/1/files/"
        name = path[len(ngc) :] if path.startswith(ngc) else path.lstrip("/")
        if name not in self.files:
            return h.send_error(404, "Not Found")
        behaviour = self.behaviour.get(name)
        if behaviour == "quota":
            return self._html(h, QUOTA_PAGE)
        if behaviour == "fail":
            return h.send_error(503, "Service Unavailable")
        if behaviour == "confirm" and "confirm" not in q:
            page = WARNING_PAGE.replace('action="/download"', f'action="/{urllib.parse.quote(name)}"')
            return self._html(h, page.format(id=name))
        return self._file(h, name)

    @staticmethod
    def _html(h: http.server.BaseHTTPRequestHandler, page: str, status: int = 200) -> None:
        body = page.encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _file(self, h: http.server.BaseHTTPRequestHandler, name: str) -> None:
        data = self.files[name]
        rng = h.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data) > 0:
            h.send_response(416)
            h.end_headers()
            return
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        body = data[start:]
        if self.behaviour.get(name) == "drop_once":
            with self.lock:
                self.behaviour.pop(name, None)
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)
