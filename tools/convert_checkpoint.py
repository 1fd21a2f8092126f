"""Convert FishNet weights between the released layout and this project's.

    python tools/convert_checkpoint.py IN OUT --to ours       # released -> {"model": state_dict, "arch": ...}
    python tools/convert_checkpoint.py IN OUT --to released   # ours -> {"state_dict": module.fish.fish..., ...}

Files are read with ``weights_only=True``. ``--trust`` reads a legacy file that pickles other
objects (only for a file you trust: unpickling runs code) and writes a weights-only copy.
"""
from __future__ import annotations

import argparse

import torch

from fishnet_train.engine.checkpoint import save_atomic
from fishnet_train.engine.checkpoint_eval import infer_arch
from fishnet_train.models import ours_to_released, read_checkpoint
from fishnet_train.models.weights import extract_state_dict


def convert(src: str, dst: str, to: str, trust: bool = False) -> str:
    """Write ``dst`` in the ``to`` layout; returns the architecture name."""
    raw = torch.load(src, map_location="cpu", weights_only=False) if trust else read_checkpoint(src)
    state = extract_state_dict(raw)  # always our key layout
    arch = infer_arch(state)
    if to == "ours":
        out = {"model": state, "arch": arch, "num_classes": state["classifier.fc.weight"].shape[0]}
    else:
        out = {"epoch": raw.get("epoch", 0) if isinstance(raw.get("epoch"), int) else 0, "arch": arch,
               "state_dict": ours_to_released(state), "best_prec1": 0.0, "optimizer": {}}
    save_atomic(out, dst)
    return arch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--to", choices=("ours", "released"), default="ours")
    parser.add_argument("--trust", action="store_true", help="unpickle a trusted legacy file (runs its code)")
    args = parser.parse_args()
    arch = convert(args.src, args.dst, args.to, args.trust)
    print(f"wrote {args.dst}: {arch}, {args.to} layout")


if __name__ == "__main__":
    main()
