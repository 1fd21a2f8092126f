"""fishnet-compare: several checkpoints on several test sets, in one table.

Each (checkpoint, set) pair is one fishnet-eval run in ``<out>/runs/<model>/<set>/``; a pair whose eval.json
is there is not evaluated again, so an interrupted comparison resumes where it stopped. The tables are written
from those files: ``results-<set>.csv`` in timm's results columns (so the two join), ``summary.md`` (one row
per checkpoint: parameters, MACs, top-1/top-5 per set) and ``top1_vs_params.png`` (the paper's figure)."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from ..config import DataConfig, EvalConfig, EvalOptions, TrainerConfig
from ..errors import UserError
from ..models import create_model
from ..models.complexity import multiply_accumulates
from .eval_sets import detect_set, imagenet_wnids
from .evaluator import run_eval
from .trained_model import load_checkpoint

TIMM_COLUMNS = ("model", "img_size", "top1", "top1_err", "top5", "top5_err", "param_count", "crop_pct",
                "interpolation")


@dataclass(frozen=True)
class Entry:
    """One checkpoint of the comparison: its file, the name its rows carry, its size and cost."""
    path: str
    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class CompareOptions:
    checkpoints: tuple[str, ...]
    sets: tuple[str, ...]  # each a data.root: ImageNet (holding val/) or a test set's own folder
    output: str
    real: bool = False  # also score ImageNet val against ReaL's labels (timm's copy)
    batch_size: int = 100
    workers: int = 8
    device: str = "auto"
    val_resize: int | None = None  # None: each checkpoint's own (the published 256 for released files)
    val_crop: int | None = None  # None: each checkpoint's own (224)


def check_inputs(options: CompareOptions) -> dict[str, str]:
    """Every file and folder, and the name each set's rows get, before anything is evaluated."""
    check_output(options.output)
    for path in options.checkpoints:
        if not os.path.isfile(path):
            raise UserError(f"checkpoint not found: {path} (check the path)")
    names: dict[str, str] = {}
    for root in options.sets:
        if not os.path.isdir(root):
            raise UserError(f"--sets {root} is not a directory; give a data.root (ImageNet's, holding val/) or a "
                            "test set's own folder")
        name = set_label(root, detect_set(root))
        if name in names.values():
            raise UserError(f"--sets: two folders are the same set ({name}); give each set once")
        names[root] = name
    if options.real and "imagenet" not in names.values():
        raise UserError("--real scores ImageNet val against ReaL's labels, but no --sets folder is ImageNet's "
                        "(holding val/); add it, or drop --real")
    return names


def check_output(output: str) -> None:
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"-o {output} is a file; give a folder for the tables (it is made if missing)")
    parent = output if os.path.isdir(output) else os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UserError(f"-o {output}: cannot write into {parent}; give a folder you can write to")


def set_label(root: str, detected: str) -> str:
    """The name of a set's results file, as timm names its own (``results-<label>.csv``); a val split of
    other classes than ImageNet's (your own dataset's) by its folder's name."""
    folder = os.path.basename(os.path.normpath(root))
    if detected == "imagenet-v2":  # three variants, named by their folders
        return folder.removesuffix("-format-val") if folder.startswith("imagenetv2-") else "imagenetv2"
    if detected == "val" and not holds_imagenet_classes(root):
        return folder
    return {"val": "imagenet", "imagenet-sketch": "sketch"}.get(detected, detected)


def holds_imagenet_classes(root: str) -> bool:
    val = os.path.join(root, "val")
    folder = val if os.path.isdir(val) else root
    return {e.name for e in os.scandir(folder) if e.is_dir()} == set(imagenet_wnids())


def describe(paths: tuple[str, ...], size: int = 224) -> list[Entry]:
    """Each checkpoint's model, parameters and MACs (at ``size``); names made unique by the file's run."""
    loaded = [load_checkpoint(p, None) for p in paths]
    archs = [c.arch for c in loaded]
    entries = []
    for ckpt in loaded:
        model = create_model(ckpt.arch, num_classes=ckpt.num_classes)
        run = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(ckpt.path))))
        stem = os.path.splitext(os.path.basename(ckpt.path))[0]
        name = ckpt.arch if archs.count(ckpt.arch) == 1 else f"{ckpt.arch}.{run}.{stem}"
        entries.append(Entry(ckpt.path, name, sum(p.numel() for p in model.parameters()),
                             multiply_accumulates(model, (size, size))))
    if len({e.name for e in entries}) < len(entries):
        raise UserError("two checkpoints would share a name in the tables; give each file once")
    return entries


def eval_options(options: CompareOptions, checkpoint: str, root: str, real: bool) -> tuple[EvalConfig, list[str]]:
    """fishnet-eval's options for one pair, and the keys set here that win over the checkpoint's."""
    sizes: dict[str, Any] = {k: v for k, v in (("val_resize", options.val_resize), ("val_crop", options.val_crop))
                             if v is not None}
    data = dataclasses.replace(DataConfig(root=root, batch_size=options.batch_size, workers=options.workers), **sizes)
    config = EvalConfig(checkpoint=checkpoint, data=data, trainer=TrainerConfig(device=options.device),
                        eval=EvalOptions(set="real" if real else "auto"))
    return config, [f"data.{k}" for k in sizes]


def evaluate_all(options: CompareOptions, entries: list[Entry], sets: dict[str, str],
                 say: Callable[[str], None] = print) -> None:
    """Every pair not yet finished (no eval.json in its run folder), one after the other."""
    for entry in entries:
        for root, label in sets.items():
            run_dir = os.path.join(options.output, "runs", entry.name, label)
            real = options.real and label == "imagenet"
            config, overridden = eval_options(options, entry.path, root, real)
            if finished(run_dir, config, overridden, real):
                say(f"{entry.name} on {label}: done before, kept")
                continue
            os.makedirs(run_dir, exist_ok=True)
            result = run_eval(config, run_dir, overridden)
            say(f"{entry.name} on {label}: top1 {result.top1:.2f}  top5 {result.top5:.2f}")


def finished(run_dir: str, config: EvalConfig, overridden: list[str], real: bool) -> bool:
    """Whether the pair's eval.json is there and is this evaluation's: the same checkpoint file, the sizes asked
    for (``overridden``), and ReaL's figures if asked. Any other is evaluated again (and replaced)."""
    try:
        with open(os.path.join(run_dir, "eval.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    sizes = [key.split(".", 1)[1] for key in overridden]
    return (record.get("checkpoint") == os.path.abspath(config.checkpoint) and (not real or "real_top1" in record)
            and all(record.get(k) == getattr(config.data, k) for k in sizes))


def read_results(output: str, entries: list[Entry], sets: dict[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """set label -> model name -> its eval.json (ImageNet's ReaL figures as the set ``imagenet-real``)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for label in sets.values():
        for entry in entries:
            with open(os.path.join(output, "runs", entry.name, label, "eval.json")) as f:
                record = json.load(f)
            table.setdefault(label, {})[entry.name] = record
            if "real_top1" in record:
                table.setdefault("imagenet-real", {})[entry.name] = {
                    **record, "top1": record["real_top1"], "top5": record["real_top5"]}
    return table


def write_tables(output: str, entries: list[Entry], table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One results CSV per set (timm's columns, best top-1 first) and summary.md; returns the files."""
    written = []
    for label, rows in table.items():
        path = os.path.join(output, f"results-{label}.csv")
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(TIMM_COLUMNS)
            for entry in sorted(entries, key=lambda e: -rows[e.name]["top1"]):
                out.writerow(timm_row(entry, rows[entry.name]))
        written.append(path)
    summary = os.path.join(output, "summary.md")
    with open(summary, "w") as f:
        f.write(markdown(entries, table))
    return written + [summary]


def timm_row(entry: Entry, record: dict[str, Any]) -> list[Any]:
    crop, resize = record["val_crop"], record["val_resize"]
    return [entry.name, crop, f"{record['top1']:.3f}", f"{100 - record['top1']:.3f}", f"{record['top5']:.3f}",
            f"{100 - record['top5']:.3f}", f"{entry.params / 1e6:.2f}", f"{crop / resize:.3f}", "bilinear"]


def markdown(entries: list[Entry], table: dict[str, dict[str, dict[str, Any]]]) -> str:
    labels = list(table)
    head = ["model", "params (M)", "GMACs at 224"] + [f"{label} top-1 / top-5" for label in labels]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for e in entries:
        cells = [e.name, f"{e.params / 1e6:.2f}", f"{e.macs / 1e9:.2f}"]
        cells += [f"{table[label][e.name]['top1']:.2f} / {table[label][e.name]['top5']:.2f}" for label in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(output: str, entries: list[Entry], rows: dict[str, dict[str, Any]], label: str) -> str | None:
    """Top-1 on ``label`` against parameters, one labelled point per checkpoint (PNG); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return None
    figure, axes = pyplot.subplots(figsize=(6, 4.5))
    for e in entries:
        x, y = e.params / 1e6, rows[e.name]["top1"]
        axes.scatter(x, y, color="tab:blue" if e.name.startswith("fishnet") else "tab:gray")
        axes.annotate(e.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set(xlabel="parameters (M)", ylabel=f"top-1 on {label} (%)", title=f"Top-1 against parameters: {label}")
    axes.grid(alpha=0.3)
    path = os.path.join(output, "top1_vs_params.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return path


def compare(options: CompareOptions, say: Callable[[str], None] = print) -> list[str]:
    """Evaluate what is not yet evaluated, then write the tables and the plot; returns the files written."""
    sets = check_inputs(options)
    entries = describe(options.checkpoints)
    evaluate_all(options, entries, sets, say)
    table = read_results(options.output, entries, sets)
    written = write_tables(options.output, entries, table)
    first = next(iter(table))
    picture = plot(options.output, entries, table[first], first)
    if picture is None:
        say("matplotlib is not installed: no plot (pip install matplotlib, or the [plot] extra)")
    return written + ([picture] if picture else [])
