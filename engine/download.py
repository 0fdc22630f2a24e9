"""Downloading the models Charm Studio uses: a registry of known files and a careful downloader.

Known models (:data:`KNOWN_MODELS`): NVIDIA's StyleGAN3 pickles from NGC (``stylegan3-{t,r}-...``),
and the stylegan3-editing release on Google Drive (ReStyle encoders, SG3-R generators, InterFaceGAN
boundaries). Files go to the model cache, :func:`models_dir`: ``$CHARM_MODELS_DIR`` if set, else
``$XDG_CACHE_HOME/charm-studio/models``, else ``~/.cache/charm-studio/models``. With
``CHARM_MODEL_MIRROR=BASE`` every known file comes from ``BASE/<its file name in the model cache>``
instead (a company mirror, or the tests' loopback server). The SHA-256 of each known file is recorded
in the cache (``checksums.json``) after its first download and checked on every later download or
import of the same file.

:func:`download_file` uses only the standard library (urllib). It writes ``<dest>.part`` and renames it
when complete, so a file under its final name is always whole; an interrupted or cancelled download
keeps the ``.part`` file and the next attempt resumes it with an HTTP Range request when the server
allows. It reports progress through a callback ``progress(done_bytes, total_bytes_or_None)``, stops
when ``cancel`` (a ``threading.Event`` or a callable returning True) is set, checks an optional
SHA-256, and refuses to store a web page in place of a model. Google Drive's "can't scan this file
for viruses" page is answered automatically (its confirm form or token); its quota-exceeded page is
reported as such.
"""

from __future__ import annotations

import hashlib
import html
import http.client
import http.cookiejar
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CharmError

__all__ = [
    "NGC_BASE_URL",
    "GDRIVE_URL",
    "KnownModel",
    "KNOWN_MODELS",
    "DownloadError",
    "DownloadCancelled",
    "models_dir",
    "find_model",
    "model_path",
    "ensure_model",
    "download_file",
    "gdrive_url",
    "ProgressCallback",
    "CancelToken",
    "ENV_MIRROR",
    "known_url",
    "recorded_checksum",
    "record_checksum",
    "format_bytes",
    "file_sha256",
]

NGC_BASE_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
GDRIVE_URL = "https://drive.google.com/uc"
ENV_MODELS_DIR = "CHARM_MODELS_DIR"
ENV_MIRROR = "CHARM_MODEL_MIRROR"
CHECKSUMS_NAME = "checksums.json"
USER_AGENT = "charm-studio/0.1 (+urllib)"

ProgressCallback = Callable[[int, int | None], None]
CancelToken = threading.Event | Callable[[], bool] | None

_MAX_PAGE_BYTES = 2 * 2**20
_CHUNK = 2**20


class DownloadError(CharmError):
    """A download failed; the message names the URL or model and says what to do."""


class DownloadCancelled(DownloadError):
    """The caller cancelled; the partial file is kept so a later call resumes it."""


@dataclass(frozen=True)
class KnownModel:
    """A file Charm Studio knows how to fetch.

    ``filename`` is the path inside the model cache; ``kind`` is ``generator``, ``encoder`` or
    ``boundary``; ``sha256`` is checked when known. ``approx_bytes`` is an estimate of the download's
    size from the network's parameter count (shown as "about"; the real size is recorded once
    downloaded).
    """

    name: str
    filename: str
    url: str
    kind: str
    description: str
    sha256: str | None = None
    approx_bytes: int = 0


def gdrive_url(file_id: str) -> str:
    """The direct-download URL of a Google Drive file id (the confirm step is handled by the downloader)."""
    return f"{GDRIVE_URL}?export=download&id={urllib.parse.quote(file_id)}"


def _registry() -> dict[str, KnownModel]:
    models: list[KnownModel] = []
    datasets = {
        "ffhq": ("FFHQ, aligned faces", "1024x1024"),
        "ffhqu": ("FFHQ-U, unaligned faces", "1024x1024"),
        "metfaces": ("MetFaces, aligned art faces", "1024x1024"),
        "metfacesu": ("MetFaces-U, unaligned art faces", "1024x1024"),
        "afhqv2": ("AFHQv2, animal faces", "512x512"),
    }
    # Estimated sizes (MB): a release pickle holds G, G_ema and D in float32.
    pickle_mb = {("t", 1024): 295, ("r", 1024): 240, ("t", 512): 315, ("r", 512): 250, ("t", 256): 215, ("r", 256): 180}
    for cfg in ("t", "r"):
        for ds, (what, res) in list(datasets.items()) + [("ffhqu", ("FFHQ-U, unaligned faces", "256x256"))]:
            name = f"stylegan3-{cfg}-{ds}-{res}"
            models.append(
                KnownModel(
                    name,
                    f"{name}.pkl",
                    NGC_BASE_URL + f"{name}.pkl",
                    "generator",
                    f"NVIDIA StyleGAN3-{cfg.upper()} {res.split('x')[0]} px, {what}",
                    approx_bytes=pickle_mb[(cfg, int(res.split("x")[0]))] * 10**6,
                )
            )
    drive = [
        (
            "restyle_pSp_ffhq",
            "restyle_pSp_ffhq.pt",
            "12WZi2a9ORVg-j6d9x4eF-CKpLaURC2W-",
            "encoder",
            "ReStyle-pSp encoder for the aligned FFHQ SG3-R generator",
        ),
        (
            "restyle_e4e_ffhq",
            "restyle_e4e_ffhq.pt",
            "1z_cB187QOc6aqVBdLvYvBjoc93-_EuRm",
            "encoder",
            "ReStyle-e4e encoder for the aligned FFHQ SG3-R generator",
        ),
        (
            "sg3-r-ffhq-1024",
            "sg3-r-ffhq-1024.pt",
            "13q6m-bpe3Ws9en9y45JEx2PHQirStt8N",
            "generator",
            "StyleGAN3-R 1024 px trained on aligned FFHQ (stylegan3-editing)",
        ),
        (
            "sg3-r-ffhqu-1024",
            "sg3-r-ffhqu-1024.pt",
            "1Xfi0mBgiDb8AUazWok9eKSRQon9YVMMW",
            "generator",
            "StyleGAN3-R 1024 px trained on unaligned FFHQ-U (stylegan3-editing)",
        ),
        (
            "boundary-ffhq-age",
            "boundaries/ffhq/age_boundary.npy",
            "1NQVOpKX6YZKVbz99sg94HiziLXHMUbFS",
            "boundary",
            "InterFaceGAN age direction, aligned FFHQ generator",
        ),
        (
            "boundary-ffhq-Smiling",
            "boundaries/ffhq/Smiling_boundary.npy",
            "1KgfJleIjrKDgdBTN4vAz0XlgSaa9I99R",
            "boundary",
            "InterFaceGAN smile direction, aligned FFHQ generator",
        ),
        (
            "boundary-ffhq-pose",
            "boundaries/ffhq/pose_boundary.npy",
            "1nCzCR17uaMFhAjcg6kFyKnCCxAKOCT2d",
            "boundary",
            "InterFaceGAN pose direction, aligned FFHQ generator",
        ),
        (
            "boundary-ffhq-Male",
            "boundaries/ffhq/Male_boundary.npy",
            "18dpXS5j1h54Y3ah5HaUpT03y58Ze2YEY",
            "boundary",
            "InterFaceGAN gender direction, aligned FFHQ generator",
        ),
    ]
    # Encoders: IR-SE50 + 16 style blocks (186 M float32 values) and the SG3-R 1024 decoder (15 M);
    # generators: G_ema alone; boundaries: 512 float64 values.
    approx = {"encoder": 805 * 10**6, "generator": 61 * 10**6, "boundary": 4224}
    models += [KnownModel(n, f, gdrive_url(i), k, d, approx_bytes=approx[k]) for n, f, i, k, d in drive]
    return {m.name: m for m in models}


KNOWN_MODELS: dict[str, KnownModel] = _registry()


def models_dir() -> Path:
    """The model cache folder (not created here)."""
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "charm-studio" / "models"


def known_url(model: KnownModel) -> str:
    """Where ``model`` is downloaded from: its official URL, or ``$CHARM_MODEL_MIRROR/<filename>``."""
    base = os.environ.get(ENV_MIRROR, "").strip()
    if base:
        return base.rstrip("/") + "/" + urllib.parse.quote(model.filename)
    return model.url


def format_bytes(n: int) -> str:
    """``123456789`` -> ``'123 MB'`` (decimal units, as download sizes are usually given)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} bytes"


def _checksums_path(directory: os.PathLike | str | None) -> Path:
    return Path(directory or models_dir()) / CHECKSUMS_NAME


def _read_checksums(directory: os.PathLike | str | None) -> dict[str, Any]:
    import json

    p = _checksums_path(directory)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_checksum(model: KnownModel, directory: os.PathLike | str | None = None) -> str | None:
    """The SHA-256 of ``model``: the registry's, else the one recorded at its first download."""
    if model.sha256:
        return model.sha256
    entry = _read_checksums(directory).get(model.filename)
    return str(entry["sha256"]) if isinstance(entry, dict) and entry.get("sha256") else None


def record_checksum(model: KnownModel, path: Path, directory: os.PathLike | str | None = None) -> str:
    """Record (once) the SHA-256 and size of ``model``'s file at ``path``; returns the hash."""
    import json
    import time

    from engine.imageio import write_text

    digest = _sha256_of(path)
    data = _read_checksums(directory)
    if model.filename not in data:
        data[model.filename] = {
            "sha256": digest,
            "bytes": path.stat().st_size,
            "recorded": time.strftime("%Y-%m-%d"),
        }
        write_text(_checksums_path(directory), json.dumps(data, indent=2, sort_keys=True) + "\n")
    return digest


def find_model(name: str) -> KnownModel:
    """A known model by name (case-insensitive; its file name, with or without suffix, also works)."""
    key = name.strip().lower()
    for m in KNOWN_MODELS.values():
        fname = Path(m.filename).name.lower()
        if key in (m.name.lower(), fname, fname.rsplit(".", 1)[0]):
            return m
    close = [m.name for m in KNOWN_MODELS.values() if key and key in m.name.lower()]
    hint = (
        f" Did you mean {', '.join(close[:4])}?"
        if close
        else f" Known models: {', '.join(list(KNOWN_MODELS)[:6])}, ..."
    )
    raise DownloadError(f"'{name}' is not a known model.{hint}")


def model_path(name: str, directory: os.PathLike | str | None = None) -> Path:
    """Where a known model lives in the cache (it may not be there yet)."""
    return Path(directory or models_dir()) / find_model(name).filename


def ensure_model(
    name: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    directory: os.PathLike | str | None = None,
    timeout: float = 60.0,
) -> Path:
    """The path of a known model, downloading it first when it is not in the cache."""
    model = find_model(name)
    dest = model_path(model.name, directory)
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    expected = recorded_checksum(model, directory)
    path = download_file(
        known_url(model), dest, sha256=expected, progress=progress, cancel=cancel, timeout=timeout, label=model.name
    )
    if expected is None:
        record_checksum(model, path, directory)
    return path


# --------------------------------------------------------------------------------------------------
# Downloading


def _cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<") and b"<html" in text[:2048]
    )


def _page_title(page: str) -> str:
    m = re.search(r"<title>(.*?)</title>", page, re.I | re.S)
    return html.unescape(m.group(1)).strip()[:80] if m else ""


_QUOTA_MARKERS = (
    "quota exceeded",
    "too many users have viewed or downloaded",
    "download quota",
    "exceeded the download",
    "quota for this file",
)


def _confirm_url(page: str, url: str, jar: http.cookiejar.CookieJar) -> str | None:
    """The URL that Google Drive's virus-scan warning page asks to fetch, if this is such a page."""
    form = re.search(r"<form[^>]*id=\"download-form\"[^>]*>(.*?)</form>", page, re.I | re.S) or re.search(
        r"<form[^>]*action=\"[^\"]*download[^\"]*\"[^>]*>(.*?)</form>", page, re.I | re.S
    )
    if form:
        action = re.search(r"action=\"([^\"]+)\"", form.group(0), re.I)
        fields = re.findall(r"<input[^>]*type=\"hidden\"[^>]*>", form.group(1), re.I)
        params = []
        for f in fields:
            n = re.search(r"name=\"([^\"]*)\"", f)
            v = re.search(r"value=\"([^\"]*)\"", f)
            if n:
                params.append((html.unescape(n.group(1)), html.unescape(v.group(1)) if v else ""))
        if action:
            target = urllib.parse.urljoin(url, html.unescape(action.group(1)))
            sep = "&" if "?" in target else "?"
            return target + (sep + urllib.parse.urlencode(params) if params else "")
    m = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    token = m.group(1) if m else next((c.value for c in jar if c.name.startswith("download_warning")), None)
    if token and "confirm=" not in url:
        return f"{url}{'&' if '?' in url else '?'}confirm={urllib.parse.quote(token)}"
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in chunks."""
    return _sha256_of(path)


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float, label: str) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None  # the partial file does not fit the server's file: the caller starts over
        if e.code in (403, 429):
            raise DownloadError(
                f"Downloading {label} failed: the server refused it (HTTP {e.code} {e.reason}); "
                f"the host may be rate-limiting. Try again later, or download {url} in a "
                f"browser and open the file."
            ) from None
        raise DownloadError(
            f"Downloading {label} failed: HTTP {e.code} {e.reason} for {url}. Check the address, or try again later."
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"Downloading {label} failed: cannot reach {urllib.parse.urlsplit(url).netloc} "
            f"({reason}). Check the internet connection or proxy and try again."
        ) from None


def download_file(
    url: str,
    dest: os.PathLike | str,
    *,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    timeout: float = 60.0,
    label: str | None = None,
    max_hops: int = 4,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, atomic) and return ``dest``.

    progress(done, total) is called after every chunk (total None when the server does not say);
    cancel stops the download with :class:`DownloadCancelled` and keeps ``dest + '.part'``.
    Raises :class:`DownloadError` for HTTP/network failures, a web page instead of the file (Google
    Drive's quota page included) and a SHA-256 mismatch.
    """
    dest = Path(dest)
    label = label or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    current = url
    for _hop in range(max_hops):
        if _cancelled(cancel):
            raise DownloadCancelled(f"Download of {label} cancelled.")
        offset = part.stat().st_size if part.exists() else 0
        resp = _open(opener, current, offset, timeout, label)
        if resp is None:
            part.unlink(missing_ok=True)
            continue
        with resp:
            status = resp.getcode()
            ctype = (resp.headers.get("Content-Type") or "").lower()
            try:
                first = resp.read(65536)
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"Downloading {label} was interrupted ({e}). Run it again to resume.") from None
            if "text/html" in ctype or (_looks_like_html(first) and status != 206):
                page = (first + resp.read(_MAX_PAGE_BYTES)).decode("utf-8", "replace")
                low = page.lower()
                if any(m in low for m in _QUOTA_MARKERS):
                    raise DownloadError(
                        f"Downloading {label} failed: Google Drive's download quota for this file is "
                        f"exceeded (it sent a web page instead of the file). Try again in a few hours, or "
                        f"open {url} in a browser, save the file and open it from disk."
                    )
                nxt = _confirm_url(page, current, jar)
                if nxt is not None and nxt != current:
                    current = nxt
                    continue
                title = _page_title(page)
                raise DownloadError(
                    f"Downloading {label} failed: the server sent a web page instead of the file"
                    f"{f' ({title!r})' if title else ''}. Open {url} in a browser to see why, or try later."
                )
            if status == 206 and offset:
                mode = "ab"
                m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range") or "")
                if m and int(m.group(1)) != offset:
                    part.unlink(missing_ok=True)
                    continue
                total = int(m.group(2)) if m and m.group(2) != "*" else None
            else:
                mode, offset = "wb", 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            done = offset
            with open(part, mode) as f:
                chunk = first
                while chunk:
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                    if _cancelled(cancel):
                        raise DownloadCancelled(
                            f"Download of {label} cancelled; {done} bytes kept in {part} for a later resume."
                        )
                    try:
                        chunk = resp.read(_CHUNK)
                    except http.client.IncompleteRead as e:
                        f.write(e.partial)
                        done += len(e.partial)
                        chunk = b""
                    except (OSError, http.client.HTTPException) as e:
                        raise DownloadError(
                            f"Downloading {label} was interrupted after {done} bytes ({e}). Run it again to resume."
                        ) from None
        if total is not None and done != total:
            raise DownloadError(
                f"Downloading {label} was interrupted after {done} of {total} bytes. Run it again to resume."
            )
        if sha256 is not None:
            got = _sha256_of(part)
            if got.lower() != sha256.lower():
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"Downloading {label} gave a file with the wrong SHA-256 ({got[:12]}..., "
                    f"expected {sha256[:12]}...); it was deleted. Download it again."
                )
        os.replace(part, dest)
        return dest
    raise DownloadError(
        f"Downloading {label} failed: {url} kept redirecting through confirmation pages. "
        f"Open it in a browser, save the file and open it from disk."
    )
