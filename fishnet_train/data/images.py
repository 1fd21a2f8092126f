"""Decoding any image file Pillow reads into an 8-bit RGB tensor (3, H, W).

Baseline JPEGs (almost all of ImageNet) are decoded by torchvision's libjpeg-turbo binding,
which measured faster than Pillow's decoder here; everything else goes through Pillow.
Pillow always reads the header first, so its decompression-bomb check covers both paths.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

try:  # torchvision 0.29 deprecates its decoders (for TorchCodec); Pillow remains the fallback
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
except ImportError:  # pragma: no cover - depends on the torchvision release
    decode_jpeg = None

# What decoding raises for files that cannot be decoded: truncated, empty, not an image, too large.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)
_FAST_JPEG_MODES = ("RGB", "L", "CMYK")


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
    with warnings.catch_warnings():
        # Files just over Pillow's pixel limit only warn; treat them as the bombs they may be.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                if decode_jpeg is not None and img.format == "JPEG" and img.mode in _FAST_JPEG_MODES:
                    return _decode_jpeg(path)
                img.load()
                return pil_to_tensor(to_rgb(img))
        except Image.DecompressionBombWarning as e:
            raise Image.DecompressionBombError(str(e)) from None


def _decode_jpeg(path: str) -> torch.Tensor:
    try:
        return decode_jpeg(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError as e:  # corrupt or truncated data
        raise OSError(f"corrupt JPEG data ({str(e).strip().splitlines()[-1]})") from None
