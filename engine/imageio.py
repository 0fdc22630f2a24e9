"""Images in and out of the engine: decoding photos, encoding PNG/JPEG, atomic file writes, and the
conversions between uint8 pictures and the networks' tensors.

Conventions: a *picture* is a numpy uint8 array [H,W,3] RGB; an *image tensor* is float32 [N,3,H,W]
with values in [-1,1] (StyleGAN's range; the release maps it to uint8 as ``clamp(x * 127.5 + 128)``).

Every file the engine writes goes through :func:`atomic_write`: the data is written to a temporary
name in the same folder and renamed over the target, so a crash or a cancel never leaves a
half-written file under the real name.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.errors import ImageAccessError, ImageIsFolderError, ImageNotFoundError, ImageReadError

__all__ = [
    "ImageInput",
    "atomic_write",
    "encode_image",
    "from_uint8",
    "load_image",
    "name_of",
    "read_tagged_json",
    "to_uint8",
    "write_bytes",
    "write_image",
    "write_npy",
    "write_text",
]

ImageInput = str | os.PathLike | np.ndarray

WRITE_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}  # file suffix -> the format written


# --------------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write the file at a temporary name beside ``path``, then rename it to
    ``path``. The temporary file is removed when ``write`` fails; ``path`` is then left untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_tagged_json(path: Path, fmt: str, error: type[Exception], what: str, fix: str) -> dict:
    """The JSON object in ``path`` whose ``"format"`` is ``fmt`` (e.g. ``charm-session/1``).

    Raises ``error`` naming the file and ``what`` it should be, ending with ``fix`` (what to do) when
    the file is missing, unreadable or of another format; "a newer Charm Studio" is named only for the
    same kind of file with a format version this one does not know.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"'{path}' does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"'{path}' is not a readable {what} ({e}); {fix}") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != fmt:
        family = fmt.rsplit("/", 1)[0] + "/"
        newer = isinstance(found, str) and found.startswith(family)
        why = "it was written by a newer Charm Studio: update Charm Studio" if newer else fix
        raise error(f"'{path}' is not a Charm Studio {what} (format {found!r}, expected {fmt!r}); {why}")
    return data


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as a ``.npy`` file at ``path`` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------------------
# Encoding


def encode_image(rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> bytes:
    """A picture ([H,W,3] uint8 RGB) as the bytes of a PNG or JPEG file (``fmt``: png, jpg or jpeg)."""
    kind = WRITE_FORMATS.get("." + fmt.lower().lstrip("."))
    if kind is None:
        raise ValueError(f"unknown image format {fmt!r}; use png or jpg")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 [H,W,3] picture, got {rgb.dtype} {rgb.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if kind == "jpg" else []
    ok, buf = cv2.imencode(".png" if kind == "png" else ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise OSError(f"could not encode a {rgb.shape[1]}x{rgb.shape[0]} picture as {kind}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor, jpeg_quality: int = 95) -> Path:
    """Write a picture ([H,W,3] uint8 RGB) or one image tensor ([3,H,W] or [1,3,H,W] in [-1,1]) as
    PNG or JPEG, chosen by ``path``'s suffix, atomically."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path.name!r}: the file name must end in .png, .jpg or .jpeg")
    if isinstance(image, torch.Tensor):
        rgb = to_uint8(image if image.ndim == 4 else image.unsqueeze(0))[0]
    else:
        rgb = image
    return write_bytes(path, encode_image(rgb, fmt, jpeg_quality))


# --------------------------------------------------------------------------------------------------
# Conversions


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """images [N,3,H,W] in ~[-1,1] -> uint8 [N,H,W,3] RGB (the release's clamp(x * 127.5 + 128))."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a [N,3,H,W] tensor, got {list(images.shape)}")
    x = (images.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def from_uint8(
    pictures: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A picture [H,W,3] or a stack [N,H,W,3] of uint8 RGB -> image tensor [N,3,H,W] in [-1,1]."""
    a = np.ascontiguousarray(pictures)
    if a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"expected RGB uint8 [H,W,3] or [N,H,W,3], got {a.dtype} {a.shape}")
    x = torch.from_numpy(a if a.ndim == 4 else a[None]).permute(0, 3, 1, 2)
    return x.to(device, dtype) / 127.5 - 1


# --------------------------------------------------------------------------------------------------
# Decoding


def name_of(image: ImageInput) -> str:
    return "<array>" if isinstance(image, np.ndarray) else os.fspath(image)


def _read_error(name: str, why: str) -> ImageReadError:
    return ImageReadError(
        f"cannot read {name!r} as an image: {why}. Open a photo in a common format (JPEG, PNG, WebP, BMP or TIFF)."
    )


def _to_rgb8(arr: np.ndarray, name: str, bgr: bool = False) -> np.ndarray:
    """Any decoded pixel array -> [H,W,3] uint8 RGB (grey replicated, alpha over white, 16-bit/float scaled)."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)) or min(arr.shape[:2]) < 1:
        raise _read_error(name, f"unsupported pixel layout {arr.shape}")
    if arr.dtype == np.uint8:
        f = None
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float32) / 257.0
    elif np.issubdtype(arr.dtype, np.integer):
        hi = float(arr.max()) if arr.size else 0.0
        f = arr.astype(np.float32) * (255.0 / 65535.0 if hi > 255 else 1.0)
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        f = finite * 255.0 if finite.size and finite.max() <= 1.0 + 1e-6 else finite
    else:
        raise _read_error(name, f"unsupported pixel type {arr.dtype}")
    if f is not None:
        arr = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.shape[2] == 2:  # grey + alpha
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    if bgr:
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    if arr.shape[2] == 4:
        a = arr[:, :, 3:].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _decode_with_pil(data: bytes, name: str) -> np.ndarray | None:
    """Decode with Pillow (EXIF orientation applied); None if Pillow is absent or does not know the format."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        return None
    try:
        im: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError:
        return None  # OpenCV's own limit (2^30 pixels) applies instead
    except (OSError, SyntaxError, ValueError) as e:  # a recognised format with a broken header
        raise _read_error(name, f"the file is damaged or truncated ({e})") from e
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise _read_error(name, f"the file is damaged or truncated ({e})") from e
    try:
        ImageOps.exif_transpose(im, in_place=True)  # in place: a second full-size copy costs GIL time to free
    except Exception:  # a malformed EXIF block only costs us the orientation
        pass
    try:
        return _pil_to_rgb8(im, name)
    except (OSError, SyntaxError, ValueError) as e:
        raise _read_error(name, f"the file is damaged or truncated ({e})") from e


def _pil_to_rgb8(im, name: str) -> np.ndarray:
    if im.mode in ("RGB", "L", "RGBA", "LA", "I;16", "I;16L", "I;16B", "I", "F"):
        if im.mode in ("I;16B",):
            im = im.convert("I")
        return _to_rgb8(np.asarray(im), name)
    if im.mode in ("P", "PA") and ("transparency" in im.info or im.mode == "PA"):
        return _to_rgb8(np.asarray(im.convert("RGBA")), name)
    return _to_rgb8(np.asarray(im.convert("RGB")), name)


def load_image(image: ImageInput) -> np.ndarray:
    """A photo as [H,W,3] uint8 RGB.

    ``image`` is a file path or an array: [H,W,3] uint8 RGB is returned as is; [H,W] grey, [H,W,4] RGBA
    (composited over white), uint16 (0..65535) and float (0..1) arrays are converted. Files get their
    EXIF orientation applied. Raises :class:`ImageReadError` (naming the file) for missing, corrupt or
    non-image files.
    """
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            return image if image.flags.c_contiguous else np.ascontiguousarray(image)
        return _to_rgb8(image, "<array>")
    name = name_of(image)
    try:
        data = Path(image).read_bytes()
    except FileNotFoundError as e:
        raise ImageNotFoundError(f"{name!r} does not exist; check the path") from e
    except IsADirectoryError as e:
        raise ImageIsFolderError(f"{name!r} is a folder, not an image file") from e
    except OSError as e:
        raise ImageAccessError(f"cannot open {name!r} ({e.strerror or e}); check the file's permissions") from e
    if not data:
        raise _read_error(name, "the file is empty")
    rgb = _decode_with_pil(data, name)
    if rgb is not None:
        return rgb
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _read_error(name, "it is not an image file or it is corrupt")
    return _to_rgb8(arr, name, bgr=arr.ndim == 3)
