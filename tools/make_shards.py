"""Pack an ImageFolder root (train/ and val/) into tar shards for ``data.format=shards``.

    python tools/make_shards.py SRC DST [--shard-mb 256]

DST gets ``train-NNNNNN.tar``, ``val-NNNNNN.tar`` (the original files, webdataset-style member
names ``<key>.<ext>`` and ``<key>.cls``) and ``train-index.npz``, ``val-index.npz`` (each
sample's shard, offset and size). Train with ``data.root=DST data.format=shards``.
"""
from __future__ import annotations

import argparse
import sys
import time

from fishnet_train.data.shards import write_shards
from fishnet_train.errors import UserError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="ImageFolder root holding train/ and val/")
    parser.add_argument("dst", help="output folder (created)")
    parser.add_argument("--shard-mb", type=int, default=256, help="shard size in MiB (default 256)")
    args = parser.parse_args()
    if args.shard_mb < 1:
        parser.error(f"--shard-mb must be at least 1, got {args.shard_mb}")
    start = time.perf_counter()

    def progress(split: str, done: int, total: int) -> None:
        if done == total or done % 10000 == 0:
            print(f"{split}: {done}/{total} files, {time.perf_counter() - start:.1f} s", file=sys.stderr)

    try:
        write_shards(args.src, args.dst, args.shard_mb, progress)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # a full disk, a folder not writable
        sys.exit(f"error: writing {args.dst} failed: {e}")


if __name__ == "__main__":
    main()
