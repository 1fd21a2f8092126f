"""``fishnet-compare``: several checkpoints on several test sets, in one table.

    fishnet-compare fishnet150_ckpt.tar resnet50-0676ba61.pth outputs/train/RUN/checkpoints/best.pt \\
        --sets /data/imagenet /data/imagenetv2-matched-frequency-format-val /data/imagenet-a /data/imagenet-r \\
        /data/sketch --real -o results/

Writes ``results-<set>.csv`` per set in timm's results columns, ``summary.md`` and ``top1_vs_params.png``
(with matplotlib); run again after an interruption, it evaluates only what it had not finished.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import USER_ERROR_EXIT_CODE, UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fishnet-compare", description=__doc__.splitlines()[0].strip("`: "))
    parser.add_argument("checkpoints", nargs="+", help="checkpoints: this project's, released FishNet files or "
                        "torchvision's released .pth files")
    parser.add_argument("--sets", nargs="+", required=True, metavar="ROOT",
                        help="each a data.root: ImageNet's (holding val/) or a test set's own folder, as downloaded")
    parser.add_argument("-o", "--output", required=True, help="the folder for the tables and each evaluation's files")
    parser.add_argument("--real", action="store_true", help="also score ImageNet val against ReaL's labels")
    parser.add_argument("--batch-size", type=int, default=100, help="evaluation batch size (default 100)")
    parser.add_argument("--workers", type=int, default=8, help="loader processes (default 8)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--val-resize", type=int, help="resize the shorter side to this (default: each "
                        "checkpoint's; 256 for released files)")
    parser.add_argument("--val-crop", type=int, help="centre crop (default: each checkpoint's; 224 for released files)")
    args = parser.parse_intermixed_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    for name in ("val_resize", "val_crop"):
        if getattr(args, name) is not None and getattr(args, name) < 32:
            parser.error(f"--{name.replace('_', '-')} must be at least 32 (the models' smallest input)")
    if args.workers < 0:
        parser.error(f"--workers must not be negative, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Imported once the arguments have passed: torch takes seconds to load.
    from ..apps.compare import CompareOptions, compare

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = CompareOptions(tuple(args.checkpoints), tuple(args.sets), args.output, args.real, args.batch_size,
                             args.workers, args.device, args.val_resize, args.val_crop)
    try:
        written = compare(options)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
