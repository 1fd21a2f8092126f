"""NVIDIA DALI's CPU ImageNet training pipeline, for the data benchmark: when nvidia-dali is installed
(``pip install nvidia-dali-cuda120``; CPU-only pipelines need no GPU), else a note saying it was skipped."""
from __future__ import annotations

import importlib
import time
from typing import Callable

BATCH = 32


def dali_train_pipeline(paths: list[str]) -> Callable[[], float] | str:
    """A measure (images/s over ``paths``, one thread) of DALI's fused decode-and-random-crop, resize to
    224 (antialiased, linear), random flip, uint8 HWC, as its ImageNet examples train; or why not."""
    try:
        dali = importlib.import_module("nvidia.dali")
    except ImportError:
        return "skipped: nvidia-dali is not installed (pip install nvidia-dali-cuda120)"
    fn, types = dali.fn, dali.types

    batch = max(1, min(BATCH, len(paths)))

    @dali.pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=0, prefetch_queue_depth=1)
    def pipeline():
        jpegs, labels = fn.readers.file(files=paths, labels=list(range(len(paths))), name="files")
        images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                                               num_attempts=10)
        images = fn.resize(images, resize_x=224, resize_y=224, antialias=True)
        return fn.flip(images, horizontal=fn.random.coin_flip()), labels

    pipe = pipeline()
    pipe.build()
    batches = len(paths) // batch

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(batches):
            pipe.run()
        return batches * batch / (time.perf_counter() - start)
    return measure
