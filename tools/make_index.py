"""Build a folder index cache ahead of training, outside any job (for example once per dataset on
a login node): then no rank walks the folders at start, nor inside the process group's timeout.

    python tools/make_index.py DATA_ROOT CACHE_FILE
    fishnet-train data.root=DATA_ROOT data.index_cache=CACHE_FILE ...
"""
from __future__ import annotations

import argparse
import sys
import time

from fishnet_train.data import find_splits
from fishnet_train.errors import UserError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="ImageFolder root holding train/ and val/")
    parser.add_argument("cache", help="the index file to write (data.index_cache)")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        train, val = find_splits(args.root, args.cache)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"{len(train)} train and {len(val)} val samples, {len(train.classes)} classes, "
          f"{time.perf_counter() - start:.1f} s: {args.cache}")


if __name__ == "__main__":
    main()
