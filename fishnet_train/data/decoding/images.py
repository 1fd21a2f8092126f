"""Decoding any image file Pillow reads into an 8-bit RGB tensor (3, H, W).

8-bit baseline and progressive JPEGs (almost all of ImageNet) are decoded by libjpeg-turbo
through simplejpeg, after a look at their frame header for the size and the number of colour
components; everything else (and any JPEG simplejpeg refuses, such as CMYK) goes through
Pillow. simplejpeg was chosen by measurement (docs/data.md): the same pixels as
torchvision's deprecated ``decode_jpeg``, as fast, laid out channels-last as the resize kernel
wants them (no copy), and decoded at 1/2, 1/4 or 1/8 of the size in the DCT domain when asked,
which the training transform uses to skip pixels a crop would throw away. Both paths refuse
decompression bombs by Pillow's limit, ``PIL.Image.MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .jpeg_region import Box, decode_box, region_decoding_available

try:
    import simplejpeg  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a wheel exists for every platform torch supports
    simplejpeg = None

# What decoding raises for files that cannot be decoded: truncated, empty, not an image, too large.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)
_SOF_FAST = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman)
_FAST_COMPONENTS = (1, 3)  # grey, YCbCr/RGB; CMYK/YCCK go to Pillow, which converts them
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field
REDUCTIONS = (8, 4, 2)  # the DCT-domain scalings libjpeg-turbo runs with SIMD code


def jpeg_frame(data: memoryview | bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from an 8-bit Huffman JPEG's frame header; None for any
    other file or frame type (arithmetic, lossless, 12-bit...), which is left to Pillow."""
    if bytes(data[:3]) != b"\xff\xd8\xff":
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _STANDALONE_MARKERS:
            pos += 2
        elif marker in _SOF_FAST:
            if pos + 10 > end or data[pos + 4] != 8:
                return None
            height, width = (data[pos + 5] << 8) | data[pos + 6], (data[pos + 7] << 8) | data[pos + 8]
            return (width, height, data[pos + 9]) if width and height else None
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker in (0xD9, 0xDA):
            return None  # another frame type, or no frame header before the image data
        else:
            pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: alpha (or a PNG's transparent colour key) composited over white, 16-bit grey scaled
    (not clipped) to 8 bits."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I->L conversion clips at 255, turning 16-bit scans white.
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8 view of an RGB image's pixels, laid out channels-last in memory."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


@dataclass(frozen=True)
class EncodedImage:
    """A file's bytes and its size, read from the header where the fast path can decode it
    (``pixels`` None), else already decoded by Pillow."""
    data: bytes
    width: int
    height: int
    pixels: torch.Tensor | None = None

    def decode(self, reduction: int = 1, fast: bool = False) -> torch.Tensor:
        """(3, H, W) uint8 RGB, ``reduction`` times smaller on each side (DCT-domain scaling, size
        rounded up as libjpeg rounds it) where the fast path decodes the file, else full size.
        ``fast``: libjpeg-turbo's faster IDCT and chroma upsampling (a level or two off)."""
        if self.pixels is not None:
            return self.pixels
        try:
            arr = simplejpeg.decode_jpeg(self.data, "RGB", fastdct=fast, fastupsample=fast,
                                         min_width=math.ceil(self.width / reduction),
                                         min_height=math.ceil(self.height / reduction))
        except ValueError:  # refused, also for what libjpeg only warns about: Pillow decodes what it can
            return _pillow_or_undecodable(self.data)
        return torch.from_numpy(arr).permute(2, 0, 1)

    def crop(self, box: Box, reduction: int = 1, fast: bool = False, region: bool = False) -> torch.Tensor:
        """(3, h, w) uint8 RGB of ``box`` (left, top, w, h, in full-size pixels) of the image decoded as
        ``decode`` decodes it, its edges rounded onto the reduced image. ``region``: decode only the box's
        rectangle where the binding is built (jpeg_region.py); the same pixels. A file that does not end
        with its end-of-image marker (cut off) goes the whole-image way, so that whether it is undecodable
        does not depend on where the crop falls."""
        if self.pixels is None and region and region_decoding_available() and self.data.endswith(b"\xff\xd9"):
            scaled = (math.ceil(self.width / reduction), math.ceil(self.height / reduction))
            try:
                return decode_box(self.data, scale_box(box, (self.width, self.height), scaled), reduction, fast)
            except ValueError:  # what the whole-image path refuses or hands to Pillow: let it decide
                pass
        pixels = self.decode(reduction, fast)
        left, top, w, h = scale_box(box, (self.width, self.height), (pixels.shape[2], pixels.shape[1]))
        return pixels[:, top:top + h, left:left + w]


def scale_box(box: Box, full: tuple[int, int], scaled: tuple[int, int]) -> Box:
    """A (left, top, w, h) box of a (width, height) image, edges rounded onto the same image decoded
    at ``scaled`` size."""
    if scaled == full:
        return box
    (left, top, w, h), (sx, sy) = box, (scaled[0] / full[0], scaled[1] / full[1])
    x0, y0 = min(scaled[0] - 1, round(left * sx)), min(scaled[1] - 1, round(top * sy))
    x1, y1 = min(scaled[0], round((left + w) * sx)), min(scaled[1], round((top + h) * sy))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


class UndecodableError(OSError):
    """A file that neither decoder reads; the message says why. Only this (not any ValueError
    or OSError of a transform) makes a training sample count as an undecodable file."""


def _pillow_or_undecodable(data: bytes) -> torch.Tensor:
    try:
        return _decode_with_pillow(data)
    except DECODE_ERRORS as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        raise UndecodableError(f"{type(e).__name__}: {detail}") from None


def open_image(data: bytes) -> EncodedImage:
    """The file's size, and its pixels unless the fast path will decode it on demand; raises
    UndecodableError if it cannot be decoded."""
    frame = jpeg_frame(memoryview(data)) if simplejpeg is not None else None
    if frame is not None and frame[2] in _FAST_COMPONENTS:
        if Image.MAX_IMAGE_PIXELS and frame[0] * frame[1] > Image.MAX_IMAGE_PIXELS:
            raise UndecodableError(f"DecompressionBombError: {frame[0]}x{frame[1]} pixels is over "
                                   f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} (a decompression bomb?)")
        return EncodedImage(data, frame[0], frame[1])
    pixels = _pillow_or_undecodable(data)
    return EncodedImage(data, pixels.shape[2], pixels.shape[1], pixels)


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_rgb(data: bytes) -> torch.Tensor:
    """Decode fully to a (3, H, W) uint8 RGB tensor; raises UndecodableError if it cannot."""
    return open_image(data).decode()


def load_rgb(path: str) -> torch.Tensor:
    return decode_rgb(read_file(path))


def _decode_with_pillow(data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        # Files just over Pillow's pixel limit only warn; treat them as the bombs they may be.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return pil_to_tensor(to_rgb(img))
        except Image.DecompressionBombWarning as e:
            raise Image.DecompressionBombError(str(e)) from None
        except UnidentifiedImageError:  # its message names the in-memory buffer: say what it means
            raise UnidentifiedImageError("not an image file Pillow can read") from None
