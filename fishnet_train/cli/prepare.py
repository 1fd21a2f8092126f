"""``fishnet-prepare``: ImageNet as downloaded into a ``data.root`` the trainer reads.

    fishnet-prepare SRC DST [--format shards|folder] [--workers N] [--shard-mb 256] [--subset] [--restart-markers]

SRC holds the official ILSVRC2012 files (``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``,
``ILSVRC2012_devkit_t12.tar.gz``) or Kaggle's layout (``ILSVRC/Data/CLS-LOC/``, ``LOC_val_solution.csv``,
``LOC_synset_mapping.txt``). Train with ``fishnet-train data.root=DST data.format=shards``.
"""
from __future__ import annotations

import argparse
import sys

from ..apps.prepare import FORMATS, default_workers, prepare
from ..errors import USER_ERROR_EXIT_CODE, UserError


def main() -> None:
    parser = argparse.ArgumentParser(prog="fishnet-prepare",
                                     description="Turn the ImageNet download into a data.root for fishnet-train.")
    parser.add_argument("src", help="folder holding the official ILSVRC2012 tars or Kaggle's ILSVRC/ folder")
    parser.add_argument("dst", help="output folder: data.root (created)")
    parser.add_argument("--format", choices=FORMATS, default="shards",
                        help="tar shards for data.format=shards (default), or class folders")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help=f"processes (default: the CPUs this process may use, {default_workers()})")
    parser.add_argument("--shard-mb", type=int, default=256, help="shard size in MiB (default 256)")
    parser.add_argument("--subset", action="store_true",
                        help="accept other counts than ImageNet-1k's 1,281,167 train, 50,000 val, 1,000 classes")
    parser.add_argument("--restart-markers", action="store_true",
                        help="shards whose train JPEGs carry a restart marker after every MCU (lossless, about 7%% "
                             "larger): training decodes only each crop's MCUs; val is written as it is")
    args = parser.parse_args()
    if args.shard_mb < 1 or args.workers < 1:
        parser.error("--shard-mb and --workers must be at least 1")
    try:
        summary = prepare(args.src, args.dst, args.format, args.workers, args.shard_mb, args.subset,
                          restart_markers=args.restart_markers)
    except UserError as e:
        print("error: " + " ".join(str(e).splitlines()), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    except OSError as e:  # a full disk, a folder made read-only meanwhile
        print(f"error: writing {args.dst} failed: {e.strerror or e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
        print("error: interrupted; the same command resumes", file=sys.stderr)
        sys.exit(130)
    print(summary.line())


if __name__ == "__main__":
    main()
