"""Time ``fishnet-prepare`` on a synthetic official ILSVRC2012 download of photo-sized JPEGs.

    python tools/benchmarks/bench_prepare.py [--classes 20] [--per-class 100] [--workers 1 2] [--format shards]

Writes ``ILSVRC2012_img_train.tar`` (one inner tar per class), ``ILSVRC2012_img_val.tar`` and a devkit
into a temporary folder (500x375 JPEGs at quality 90, ~115 KB each, like ImageNet's ~110 KB), then runs
the command for each worker count, alternately, each into a fresh output folder after a sync, and prints
files/s, MB/s and peak RSS (the main process, before and after preparing, and the largest worker). The
archives are read from the page cache.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import scipy.io
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
          "num_train_images"]


def photo(rng: np.random.Generator) -> bytes:
    """Smooth colour blobs with noise: JPEG sizes close to ImageNet's."""
    base = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).resize((500, 375), Image.BILINEAR)
    pixels = np.clip(np.asarray(base, np.int16) + rng.normal(0, 20, (375, 500, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_download(root: str, classes: int, per_class: int, val_per_class: int) -> int:
    """The three official files; returns their total size in bytes."""
    rng = np.random.default_rng(0)
    wnids = [f"n{1440764 + 97 * k:08d}" for k in range(classes)]
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_train.tar"), "w", format=tarfile.GNU_FORMAT) as outer:
        for wnid in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for i in range(per_class):
                    add(tar, f"{wnid}_{i}.JPEG", photo(rng))
            add(outer, f"{wnid}.tar", inner.getvalue())
    labels = [k for k in range(classes) for _ in range(val_per_class)]
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_val.tar"), "w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(len(labels)):
            add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", photo(rng))
    synsets = np.zeros((classes, 1), dtype=[(f, object) for f in FIELDS])
    for k, wnid in enumerate(wnids):
        synsets[k, 0] = (k + 1, wnid, wnid, "", 0, np.zeros(0), 0, per_class)
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    truth = "".join(f"{k + 1}\n" for k in labels).encode()
    with tarfile.open(os.path.join(root, "ILSVRC2012_devkit_t12.tar.gz"), "w:gz") as tar:
        add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    return sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root))


def run(src: str, dst: str, workers: int, fmt: str, shard_mb: int) -> tuple[float, str]:
    os.sync()  # the previous run's output written back first: it would slow this run's writes
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fishnet_train.cli.prepare", src, dst, "--subset", "--workers",
                             str(workers), "--format", fmt, "--shard-mb", str(shard_mb)], cwd=ROOT,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr.strip())
    return seconds, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, len(os.sched_getaffinity(0))}))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each worker count, alternated")
    parser.add_argument("--format", choices=("shards", "folder"), default="shards")
    parser.add_argument("--shard-mb", type=int, default=16,
                        help="16 (default): a dozen shards per split, as ImageNet makes hundreds of 256 MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "download")
        os.makedirs(src)
        start = time.perf_counter()
        size = write_download(src, args.classes, args.per_class, args.val_per_class)
        files = args.classes * (args.per_class + args.val_per_class)
        print(f"download: {files:,} files, {size / 1e6:,.1f} MB ({size / files / 1e3:.0f} KB per file), "
              f"written in {time.perf_counter() - start:.1f} s")
        for repeat in range(args.repeats):
            for workers in args.workers:
                dst = os.path.join(tmp, f"out-{workers}-{repeat}")
                seconds, summary = run(src, dst, workers, args.format, args.shard_mb)
                print(f"--workers {workers}: {summary}; the command took {seconds:.1f} s with its start-up")
                shutil.rmtree(dst)


if __name__ == "__main__":
    main()
