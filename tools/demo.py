"""``make demo``: a FishNet learns scikit-learn's handwritten digits on the CPU.

Writes the 1,797 8x8 digit scans as 32x32 JPEGs (quality 95: the decode path ImageNet's files take)
into an ImageFolder with a fixed, stratified train/val split, trains with ``experiment=demo``,
evaluates the best checkpoint with ``fishnet-eval`` and prints top-1 and top-5.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def write_digits(root: Path, val_fraction: float = 0.2, seed: int = 0) -> tuple[int, int]:
    """The digits as ``root/{train,val}/<digit>/*.jpg``; returns the split sizes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(indices, test_size=val_fraction, stratify=digits.target, random_state=seed)
    for split, chosen in (("train", train_idx), ("val", val_idx)):
        for i in chosen:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(pixels, "L").resize((SIZE, SIZE), Image.BILINEAR).save(folder / f"{i:04d}.jpg", quality=95)
    return len(train_idx), len(val_idx)


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_data", help="where the dataset and runs go")
    parser.add_argument("overrides", nargs="*", help="extra fishnet-train overrides, e.g. trainer.epochs=2")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data, train_dir, eval_dir = out / "digits_jpeg", out / "train_run", out / "eval_run"
    if not (data / "train").is_dir():
        n_train, n_val = write_digits(data)
        print(f"wrote {n_train} train and {n_val} val digit images to {data}")
    for stale in (train_dir, eval_dir):
        shutil.rmtree(stale, ignore_errors=True)
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    run([str(bin_dir / "fishnet-train"), "experiment=demo", f"data.root={data}", f"hydra.run.dir={train_dir}",
         *args.overrides])
    run([str(bin_dir / "fishnet-eval"), f"checkpoint={train_dir / 'checkpoints' / 'best.pt'}", f"data.root={data}",
         f"hydra.run.dir={eval_dir}", "data.workers=2"])
    result = json.loads((eval_dir / "eval.json").read_text())
    print(f"\ndemo: {result['model']} on {result['images']} held-out digits: top-1 {result['top1']:.2f}%  "
          f"top-5 {result['top5']:.2f}%  ({time.perf_counter() - started:.0f} s for training and evaluation)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
