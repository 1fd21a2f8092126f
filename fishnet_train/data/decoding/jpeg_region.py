"""The training crop's rectangle decoded alone, by a small binding over libjpeg-turbo (_jpeg_region.c).

A random-resized crop covers about half of the image on average. libjpeg-turbo never decodes the
rows below the rectangle, only entropy-decodes the rows above it, and transforms only the iMCU
columns it touches. A file with a restart marker after every MCU (``add_restart_markers``, which
restart_markers.py runs over a folder) is cut down to the MCUs around the rectangle first, so that
nothing else is even entropy-decoded. The binding is compiled at install time when a C compiler, Python's
headers and libjpeg-turbo's are there (Debian: gcc python3-dev libjpeg62-turbo-dev); without it the whole
image is decoded, and ``region_decoder_notice`` says so once, with what is missing.
``python -m fishnet_train.data.decoding.status`` prints whether it was built (``make install`` runs it).
"""
from __future__ import annotations

import os
import shutil
import sysconfig

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


PACKAGES = "Debian, Ubuntu: gcc python3-dev libjpeg62-turbo-dev (Ubuntu: libjpeg-turbo8-dev); Fedora: gcc " \
    "python3-devel libjpeg-turbo-devel"


def region_decoder_notice() -> str | None:
    """One line for the log when the binding is missing (what the build lacked, and the packages), else None."""
    if _MISSING is None:
        return None
    missing = missing_build_prerequisites()
    why = f"the build lacked {', '.join(missing)}" if missing else f"{_MISSING}; `pip install -v -e .` shows why"
    return (f"region decoding is not available ({why}): training crops decode whole images, which is slower; "
            f"to build it, install the packages ({PACKAGES}) and run make install (or pip install -e .) again")


def missing_build_prerequisites() -> list[str]:
    """What building the binding needs and this machine lacks: a C compiler, Python.h, jpeglib.h."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    include = sysconfig.get_paths()["include"]
    folders = [include, "/usr/include", "/usr/local/include", *os.environ.get("CPATH", "").split(os.pathsep),
               *os.environ.get("C_INCLUDE_PATH", "").split(os.pathsep)]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        folders.append(os.path.join("/usr/include", multiarch))
    missing = [] if shutil.which(compiler) or shutil.which("cc") else ["a C compiler"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        missing.append("Python's headers (Python.h)")
    if not any(folder and os.path.isfile(os.path.join(folder, "jpeglib.h")) for folder in folders):
        missing.append("libjpeg-turbo's headers (jpeglib.h)")
    return missing


def build_status() -> str:
    """``make install``'s line on the binding."""
    notice = region_decoder_notice()
    return notice if notice is not None else "region decoder built: training crops decode only their rectangle"


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
