"""The training crop's rectangle decoded alone, by a small binding over libjpeg-turbo (_jpeg_region.c).

A random-resized crop covers about half of the image on average. libjpeg-turbo never decodes the
rows below the rectangle, only entropy-decodes the rows above it, and transforms only the iMCU
columns it touches. A file with a restart marker after every MCU (``add_restart_markers``, which
restart_markers.py runs over a folder) is cut down to the MCUs around the rectangle first, so that
nothing else is even entropy-decoded. The binding is compiled at install time when a C compiler and libjpeg-turbo's
headers are there (Debian: libjpeg62-turbo-dev); without it the whole image is decoded, as before,
and ``region_decoder_notice`` says so once.
"""
from __future__ import annotations

import torch

try:
    from ._jpeg_region import add_restart_markers as _add_restart_markers
    from ._jpeg_region import decode_box as _decode_box
    from ._jpeg_region import has_mcu_restarts as _has_mcu_restarts
    _MISSING: str | None = None
except ImportError as e:  # not compiled here: no compiler, or no libjpeg-turbo headers at install
    _decode_box = _add_restart_markers = _has_mcu_restarts = None  # type: ignore[assignment]
    _MISSING = str(e).splitlines()[0] if str(e) else "not built"

Box = tuple[int, int, int, int]


def region_decoding_available() -> bool:
    return _decode_box is not None


def region_decoder_notice() -> str | None:
    """One line for the log when the binding is missing, else None."""
    if _MISSING is None:
        return None
    return (f"region decoding is not available ({_MISSING}): training crops decode whole images, which is "
            "slower; to build it, install a C compiler and libjpeg-turbo's headers (Debian: gcc "
            "libjpeg62-turbo-dev) and reinstall fishnet-train")


def decode_box(data: bytes, box: Box, reduction: int, fast: bool) -> torch.Tensor:
    """(3, h, w) uint8 RGB (channels-last in memory) of ``box`` (left, top, w, h) of the JPEG ``data``
    decoded at 1/``reduction`` scale: the same pixels as that box of the whole decoded image. Raises
    ValueError where libjpeg refuses the file or warns about its data."""
    if _decode_box is None:
        raise ValueError("the region decoder is not built")
    left, top, w, h = box
    out = torch.empty((h, w, 3), dtype=torch.uint8)
    _decode_box(data, out.numpy(), left, top, w, h, 1, reduction, fast)
    return out.permute(2, 0, 1)


def add_restart_markers(data: bytes) -> bytes:
    """The JPEG ``data`` rewritten losslessly (its DCT coefficients copied, so the same pixels) as one
    sequential scan with a restart marker after every MCU, Huffman tables made for it, and its APPn and
    COM markers kept. Raises ValueError where libjpeg refuses the file or warns about its data."""
    if _add_restart_markers is None:
        raise ValueError(region_decoder_notice())
    return _add_restart_markers(data)


def has_mcu_restarts(data: bytes) -> bool:
    """Whether ``decode_box`` reads only the MCUs around a box of ``data`` (what add_restart_markers
    writes); from the headers alone."""
    return _has_mcu_restarts is not None and _has_mcu_restarts(data)
