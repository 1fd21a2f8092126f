"""``fishnet-convert-checkpoint``: convert FishNet weights between the released layout and this project's
(``--to ours`` also takes torchvision's ResNet and DenseNet files, their old DenseNet key names renamed).

    fishnet-convert-checkpoint IN OUT --to ours       # released -> {"model": state_dict, "arch": ...}
    fishnet-convert-checkpoint IN OUT --to released   # ours -> {"state_dict": module.fish.fish..., ...}

Files are read with ``weights_only=True``. ``--trust`` reads a legacy file that pickles other
objects (only for a file you trust: unpickling runs code) and writes a weights-only copy.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ..errors import USER_ERROR_EXIT_CODE, UserError
from ..models import classifier_prefix, infer_arch, ours_to_released, read_checkpoint
from ..models.weights import extract_state_dict
from ..training.checkpoint import save_atomic


def convert(src: str, dst: str, to: str, trust: bool = False) -> str:
    """Write ``dst`` in the ``to`` layout; returns the architecture name."""
    if trust and not os.path.isfile(src):
        raise UserError(f"checkpoint not found: {src} (check the path)")
    raw = torch.load(src, map_location="cpu", weights_only=False) if trust else read_checkpoint(src)
    state = extract_state_dict(raw)  # always our key layout
    arch = infer_arch(state)
    if to == "ours":
        out = {"model": state, "arch": arch, "num_classes": state[f"{classifier_prefix(arch)}weight"].shape[0]}
    elif not arch.startswith("fishnet"):
        raise UserError(f"{src} holds a {arch}: the released layout is FishNet's, and torchvision's own layout is "
                        "the one its files already have; use --to ours")
    else:
        out = {"epoch": raw.get("epoch", 0) if isinstance(raw.get("epoch"), int) else 0, "arch": arch,
               "state_dict": ours_to_released(state), "best_prec1": 0.0, "optimizer": {}}
    save_atomic(out, dst)
    return arch


def main() -> None:
    parser = argparse.ArgumentParser(prog="fishnet-convert-checkpoint",
                                     description="Convert FishNet weights between the released layout and ours.")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--to", choices=("ours", "released"), default="ours")
    parser.add_argument("--trust", action="store_true", help="unpickle a trusted legacy file (runs its code)")
    args = parser.parse_args()
    try:
        arch = convert(args.src, args.dst, args.to, args.trust)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    print(f"wrote {args.dst}: {arch}, {args.to} layout")


if __name__ == "__main__":
    main()
