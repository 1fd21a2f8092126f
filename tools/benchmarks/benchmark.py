"""Speed, measured side by side in one run: ours against the plain reference.

    python tools/benchmarks/benchmark.py data [--root DIR] [--limit N] --json OUT
    python tools/benchmarks/benchmark.py model --model fishnet150 --batch 16 --size 224 --json OUT
    python tools/benchmarks/benchmark.py trainer --model fishnet99 --batch 16 --size 224 --json OUT
    python tools/benchmarks/benchmark.py index --samples 1281167 --workers 4 --json OUT
    python tools/benchmarks/benchmark.py decoders --root DIR --json OUT
    python tools/benchmarks/benchmark.py tracking --model fishnet99 --batch 16 --size 224 --json OUT
    python tools/benchmarks/benchmark.py all --root DIR --json OUT

``data``: images/s of ONE process on ONE thread over DIR's ImageFolder splits (or, for shards, their first
``--limit`` train samples copied out; with no ``--root``, ``--synthetic`` JPEGs of ImageNet's sizes, the
figures then labelled synthetic), for what the trainer's loader workers do (ours) and for the torchvision
reference pipeline.
``model``: training-step and inference images/s of the trainer's defaults for the device
(ours) against the plain eager NCHW fp32 model, plus the peak memory of a training step with
and without gradient checkpointing. Each side runs in a process of its own (the trainer's
allocator setting is process-wide), started together; their rounds alternate.
``trainer``: the trainer loop on in-memory batches against the bare model step.
``index``: loader workers' private memory over a full pass of a synthetic index (no files), the
flat index against a list of tuples. ``decoders``: the JPEG decoders installed here, full size
and DCT-scaled, on DIR's files. ``tracking``: the training thread's cost of TensorBoard, MLflow (a local
server it starts) and W&B (offline) at once, per logging call and on the trainer's loop logging every step,
against no tracker; the cost at ``--every`` (the default interval, 50). Every JSON names the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import bench_data  # noqa: E402
from bench_inputs import copy_out_of_shards, is_shard_root, write_synthetic  # noqa: E402
from bench_decoders import bench_decoders  # noqa: E402
from bench_index import bench_index  # noqa: E402
from bench_machine import machine_info  # noqa: E402
from bench_model import bench_model, bench_trainer  # noqa: E402
from bench_tracking import bench_tracking  # noqa: E402


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    for name, value in rows.items():
        base = value.get("reference", value.get("eager")) if isinstance(value, dict) else None
        if base is not None and "ours" in value:
            print(f"  {name:<20} ours {value['ours']:10.1f}   reference {base:10.1f}   "
                  f"speed-up {value['ours'] / base:5.2f}x")
        elif isinstance(value, dict):
            print(f"  {name:<20} " + "   ".join(f"{k} {_number(v)}" for k, v in value.items()))
        else:
            print(f"  {name:<20} {_number(value)}")


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("data", "model", "trainer", "index", "decoders", "tracking", "all"))
    parser.add_argument("--root", help="data and decoders: an ImageNet root (class folders or shards); none: "
                        "synthetic JPEGs of ImageNet's sizes")
    parser.add_argument("--limit", type=int, default=None, help="use at most N images (shards: 1000 if not given)")
    parser.add_argument("--synthetic", type=int, default=1000, help="without --root: this many synthetic JPEGs")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--model", default="fishnet150")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--samples", type=int, default=1281167, help="index: synthetic samples (ImageNet's train)")
    parser.add_argument("--workers", type=int, default=4, help="index: loader workers")
    parser.add_argument("--every", type=int, default=50, help="tracking: the interval to state the cost at")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--skip-data", action="store_true", help="with 'all': skip the data benchmark")
    parser.add_argument("--compiled", action="store_true",
                        help="also time fishnet-eval's trainer.compile=true inference (compiles for about a minute)")
    args = parser.parse_args()
    results: dict = {"machine": machine_info()}
    print_table("machine", results["machine"])
    with tempfile.TemporaryDirectory() as scratch:
        run(args, results, scratch)
    out = {**results[args.what], "machine": results["machine"]} if args.what != "all" else results
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")


def images_root(root: str | None, limit: int | None, synthetic: int, scratch: str) -> tuple[str, str]:
    """The folder the data benchmarks read, and what it is (every JSON and table says so)."""
    if root is None:
        print(f"writing {synthetic} synthetic JPEGs of ImageNet's sizes (no --root)")
        return write_synthetic(os.path.join(scratch, "synthetic"), synthetic), f"synthetic: {synthetic} JPEGs"
    if is_shard_root(root):
        folder = os.path.join(scratch, "from_shards")
        count = copy_out_of_shards(root, folder, limit or 1000)
        return folder, f"shards: the first {count} train samples of {os.path.abspath(root)}"
    if not any(os.path.isdir(os.path.join(root, split)) for split in ("train", "val")):
        print(f"error: --root {root} holds no train/ or val/ (class folders) and no train-index.npz (shards): "
              "pass an ImageNet data.root, or no --root for synthetic JPEGs", file=sys.stderr)
        sys.exit(2)
    return root, f"folder: {os.path.abspath(root)}"


def run(args: argparse.Namespace, results: dict, scratch: str) -> None:
    reads_images = args.what == "decoders" or args.what == "data" or (args.what == "all" and not args.skip_data)
    root, source = images_root(args.root, args.limit, args.synthetic, scratch) if reads_images else (None, "")
    label = " (SYNTHETIC JPEGs)" if source.startswith("synthetic") else ""
    if args.what == "decoders":
        results["decoders"] = {"images_source": source, **bench_decoders(root, args.limit, args.rounds)}
        print_table(f"JPEG decoders, images/s on one core{label}", results["decoders"])
    if args.what == "index":
        results["index"] = bench_index(args.samples, args.workers)
        print_table("sample index: loader workers' private memory, MB", results["index"])
    if args.what == "data" or (args.what == "all" and not args.skip_data):
        results["data"] = {"images_source": source, **bench_data(root, args.limit, args.rounds)}
        print_table(f"data pipeline, images/s on one core{label}", results["data"])
    if args.what in ("model", "all"):
        results["model"] = bench_model(args.model, args.batch, args.size, args.steps, args.rounds, args.compiled)
        print_table(f"{args.model}, batch {args.batch}, {args.size}x{args.size}, images/s", results["model"])
    if args.what in ("trainer", "all"):
        results["trainer"] = bench_trainer(args.model, args.batch, args.size, args.steps, args.rounds)
        print_table("trainer loop vs bare step, images/s", results["trainer"])
    if args.what == "tracking":
        results["tracking"] = bench_tracking(args.model, args.batch, args.size, args.steps, args.rounds, args.every)
        print_table("tracking: the training thread's cost", results["tracking"])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
