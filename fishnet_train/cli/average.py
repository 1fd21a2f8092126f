"""``fishnet-average``: average the weights of several checkpoints of one run into one file.

    fishnet-average outputs/train/RUN/checkpoints/epoch-*.pt -o averaged.pt
    fishnet-average A.pt B.pt C.pt -o averaged.pt --bn-data /data/imagenet   # BN statistics measured anew

The output reads like any checkpoint: ``fishnet-eval checkpoint=averaged.pt``, fishnet-predict,
fishnet-export and ``model.pretrained=averaged.pt``.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import USER_ERROR_EXIT_CODE, UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fishnet-average", description=__doc__.splitlines()[0].strip("`: "))
    parser.add_argument("checkpoints", nargs="+", help="two or more checkpoints of one run (ours, or released)")
    parser.add_argument("-o", "--output", required=True, help="the file to write (.pt)")
    parser.add_argument("--ema", action="store_true", help="average the checkpoints' EMA weights")
    parser.add_argument("--bn-data", metavar="ROOT", help="recompute the BatchNorm statistics on train batches "
                        "from this data.root (an ImageFolder root or a shard folder); default: average them")
    parser.add_argument("--bn-batches", type=int, default=50, help="batches for --bn-data (default 50)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size for --bn-data (default 64)")
    parser.add_argument("--workers", type=int, default=4, help="loader processes for --bn-data (default 4)")
    args = parser.parse_intermixed_args(argv)
    for name in ("bn_batches", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.output.endswith((".pt", ".pth")):
        parser.error(f"-o {args.output}: the average is a .pt checkpoint (fishnet-export makes safetensors of it)")
    if args.workers < 0:
        parser.error(f"--workers must not be negative, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Imported once the arguments have passed: torch takes seconds to load.
    from ..apps.averager import BatchNormData, average

    try:
        bn = None
        if args.bn_data:
            if not os.path.isdir(args.bn_data):
                raise UserError(f"--bn-data {args.bn_data} is not a directory; give a data.root holding train/ "
                                "(or a shard folder)")
            bn = BatchNormData(args.bn_data, args.bn_batches, args.batch_size, args.workers)
        arch = average(args.checkpoints, args.output, args.ema, bn)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    except OSError as e:  # a checkpoint or a --bn-data file that cannot be read
        print(f"error: {e.filename or args.output}: {e.strerror or e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    how = "recomputed on train batches" if args.bn_data else "averaged"
    print(f"wrote {args.output}: the mean of {len(args.checkpoints)} {arch} checkpoints, BatchNorm statistics {how}")


if __name__ == "__main__":
    main()
