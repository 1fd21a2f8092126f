"""JPEG decoders side by side on real files, one thread: each candidate PyPI offers that is
installed here, at full size and (where it can) DCT-scaled to what a training crop needs."""
from __future__ import annotations

import functools
import importlib
import io
import math
import os
import random
import warnings
from typing import Callable

import numpy as np
import torch
from PIL import Image

from bench_rounds import images_per_second, median_of_rounds
from fishnet_train.data import find_split
from fishnet_train.data.decoding.images import jpeg_frame
from fishnet_train.data.transforms import crop_reduction, random_resized_crop_box


def _optional(module: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent, or present without its native library
        return None


def candidates(blobs: list[bytes], reductions: list[int]) -> dict[str, Callable[[int], object]]:
    """Full decodes, and decodes at the training crop's reduction (1/2, 1/4, 1/8 where it is allowed)."""
    sizes = [jpeg_frame(b)[:2] for b in blobs]  # type: ignore[index]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    out: dict[str, Callable[[int], object]] = {
        "pillow": lambda i: np.asarray(Image.open(io.BytesIO(blobs[i])).convert("RGB")),
        "pillow_draft": lambda i: _pillow_draft(blobs[i], sizes[i], reductions[i]),
    }
    sj, tv, tc = _optional("simplejpeg"), _optional("torchvision.io"), _optional("torchcodec.decoders")
    if sj is not None:
        out["simplejpeg"] = lambda i: sj.decode_jpeg(blobs[i], "RGB")
        out["simplejpeg_scaled"] = lambda i: sj.decode_jpeg(
            blobs[i], "RGB", min_width=math.ceil(sizes[i][0] / reductions[i]),
            min_height=math.ceil(sizes[i][1] / reductions[i]))
        out["simplejpeg_scaled_fast"] = lambda i: sj.decode_jpeg(
            blobs[i], "RGB", fastdct=True, fastupsample=True, min_width=math.ceil(sizes[i][0] / reductions[i]),
            min_height=math.ceil(sizes[i][1] / reductions[i]))
    if tv is not None and hasattr(tv, "decode_jpeg"):
        out["torchvision_decode_jpeg"] = lambda i: tv.decode_jpeg(tensors[i], mode=tv.ImageReadMode.RGB)
    if tc is not None:
        out["torchcodec"] = lambda i: tc.decode_jpeg(tensors[i], mode="RGB")
    tj = _optional("turbojpeg")
    if tj is not None:
        try:
            turbo = tj.TurboJPEG()
            out["pyturbojpeg"] = lambda i: turbo.decode(blobs[i], pixel_format=tj.TJPF_RGB)
        except Exception:  # noqa: BLE001 - needs libturbojpeg >= 3 on the system
            pass
    return out


def equal_outputs(fns: dict[str, Callable[[int], object]], n: int) -> str | None:
    """How many files simplejpeg decodes to exactly torchvision's pixels ("k/n"); None without both."""
    if "simplejpeg" not in fns or "torchvision_decode_jpeg" not in fns:
        return None
    same = sum(np.array_equal(np.asarray(fns["simplejpeg"](i)),
                              fns["torchvision_decode_jpeg"](i).permute(1, 2, 0).numpy())  # type: ignore[attr-defined]
               for i in range(n))
    return f"{same}/{n}"


def _pillow_draft(data: bytes, size: tuple[int, int], reduction: int) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (math.ceil(size[0] / reduction), math.ceil(size[1] / reduction)))
    return np.asarray(img.convert("RGB"))


def bench_decoders(root: str, limit: int | None, rounds: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        split = find_split(root, "train" if os.path.isdir(os.path.join(root, "train")) else "val")
        blobs = [b for b in (split.read(i) for i in range(len(split))[:limit]) if jpeg_frame(b)]
        rng = random.Random(0)
        reductions = []
        for b in blobs:
            w, h = jpeg_frame(b)[:2]  # type: ignore[index]
            box = random_resized_crop_box(w, h, (0.08, 1.0), (3 / 4, 4 / 3), rng)
            reductions.append(crop_reduction(box[2], box[3], 224))
        fns = candidates(blobs, reductions)
        timed = {k: functools.partial(images_per_second, fn, len(blobs)) for k, fn in fns.items()}
        med = median_of_rounds(timed, rounds)
        return {**{k: round(v, 1) for k, v in med.items()}, "images": len(blobs),
                "reduced_share": round(sum(r > 1 for r in reductions) / max(1, len(reductions)), 3),
                "simplejpeg_equal_to_torchvision": equal_outputs(fns, len(blobs))}
    finally:
        torch.set_num_threads(threads)
