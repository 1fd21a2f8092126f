"""Decoding any image file Pillow reads into an 8-bit RGB tensor (3, H, W).

8-bit baseline and progressive JPEGs (almost all of ImageNet) are decoded by torchvision's
libjpeg-turbo binding, after a look at their frame header for the size and the number of
colour components; everything else goes through Pillow. Both paths refuse decompression
bombs by Pillow's limit, ``PIL.Image.MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

try:  # torchvision 0.29 deprecates its decoders (for TorchCodec); Pillow remains the fallback
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - depends on the torchvision release
    decode_jpeg = None

# What decoding raises for files that cannot be decoded: truncated, empty, not an image, too large.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)
_SOF_FAST = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman)
_FAST_COMPONENTS = (1, 3, 4)  # grey, YCbCr/RGB, CMYK/YCCK: what Pillow opens as L, RGB, CMYK
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field


def jpeg_frame(data: memoryview) -> tuple[int, int, int] | None:
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
    """8-bit RGB: alpha composited over white, 16-bit grey scaled (not clipped) to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I->L conversion clips at 255, turning 16-bit scans white.
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8 view of an RGB image's pixels, laid out channels-last in memory."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def load_rgb(path: str) -> torch.Tensor:
    """Decode fully to a (3, H, W) uint8 RGB tensor; raises one of DECODE_ERRORS if it cannot."""
    if decode_jpeg is not None:
        data = np.fromfile(path, dtype=np.uint8)
        frame = jpeg_frame(memoryview(data.data))
        if frame is not None and frame[2] in _FAST_COMPONENTS:
            _check_pixels(frame[0], frame[1])
            return _decode_jpeg(torch.from_numpy(data))
    with warnings.catch_warnings():
        # Files just over Pillow's pixel limit only warn; treat them as the bombs they may be.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                img.load()
                return pil_to_tensor(to_rgb(img))
        except Image.DecompressionBombWarning as e:
            raise Image.DecompressionBombError(str(e)) from None


def _check_pixels(width: int, height: int) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise Image.DecompressionBombError(
            f"{width}x{height} pixels is over PIL.Image.MAX_IMAGE_PIXELS={limit} (a decompression bomb?)"
        )


def _decode_jpeg(data: torch.Tensor) -> torch.Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:  # corrupt or truncated data
        raise OSError(f"corrupt JPEG data ({str(e).strip().splitlines()[-1]})") from None
