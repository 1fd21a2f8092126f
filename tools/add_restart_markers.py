"""Rewrite a folder of JPEGs with a restart marker after every MCU: training crops then decode only their own.

    python tools/add_restart_markers.py SRC DST [--workers N]

Every file under SRC goes to the same path under DST (DST may be SRC: in place). JPEGs are rewritten
losslessly (the same pixels, files about 7 % larger); other files, and JPEGs libjpeg refuses or warns
about, are copied as they are. Interrupted, it goes on from where it stopped when run again. Run it on
the train split (SRC=/data/imagenet/train): validation decodes whole images, a little slower with markers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="folder of images (e.g. the train split of an ImageFolder root)")
    parser.add_argument("dst", help="output folder (created); SRC itself rewrites in place")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes (default: the cores this process may use)")
    args = parser.parse_args()
    src, dst = os.path.abspath(args.src), os.path.abspath(args.dst)
    if not os.path.isdir(src):
        parser.error(f"{args.src} is not a folder: give the folder of images to rewrite")
    if dst != src and dst.startswith(src + os.sep):
        parser.error(f"{args.dst} is inside {args.src}: give an output folder outside it, or SRC itself for in place")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    # Imported once the arguments are known good: torch takes seconds to import.
    from fishnet_train.data.decoding.jpeg_region import region_decoder_notice
    from fishnet_train.data.decoding.restart_markers import ALREADY, DONE, KEPT, REWRITTEN, rewrite_tree
    if region_decoder_notice() is not None:
        parser.error(region_decoder_notice())
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 10000 == 0:
            print(f"{done}/{total} files, {time.perf_counter() - start:.1f} s", file=sys.stderr)

    try:
        counts = rewrite_tree(src, dst, args.workers, progress)
    except OSError as e:  # a full disk, a folder not writable
        sys.exit(f"error: writing {args.dst} failed: {e}")
    files = counts.files
    growth = 100 * (counts.bytes_after / counts.bytes_before - 1) if counts.bytes_before else 0.0
    print(f"{files[REWRITTEN]} rewritten ({growth:+.1f} % bytes), {files[ALREADY]} had the markers already, "
          f"{files[KEPT]} kept as they were (not a JPEG the region decoder reads, or corrupt), "
          f"{files[DONE]} written by an earlier run; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
