"""Decoding any image file Pillow reads into 8-bit RGB."""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

# What Pillow raises for files it cannot decode: truncated, empty, not an image, too large.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


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


def load_rgb(path: str) -> Image.Image:
    """Open, fully decode and convert to RGB; raises one of DECODE_ERRORS if it cannot."""
    with warnings.catch_warnings():
        # Files just over Pillow's pixel limit only warn; treat them as the bombs they may be.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                img.load()
                return to_rgb(img)
        except Image.DecompressionBombWarning as e:
            raise Image.DecompressionBombError(str(e)) from None
