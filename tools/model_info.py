"""Parameters, MACs and output shapes of the models: one table of all of them, or one model's stages.

    python tools/model_info.py                      # every model: parameters, GMACs, released top-1/top-5
    python tools/model_info.py fishnet150 resnet50 [--size 224 224] [--classes 1000]
"""
from __future__ import annotations

import argparse

import torch

from fishnet_train.models import FishNet, create_model, list_models, model_info
from fishnet_train.models.complexity import multiply_accumulates

# The table's order: FishNet, then the baselines, each family from the smallest.
ORDER = ("fishnet99", "fishnet150", "fishnet201", "resnet50", "resnet101", "resnet152",
         "densenet121", "densenet161", "densenet169", "densenet201")


def stage_shapes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of every stage, in execution order, via forward hooks."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape))))
             for name, m in stages(model)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def stages(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    if isinstance(model, FishNet):
        named = [("stem", model.stem)]
        named += [(f"tail.{i}", m) for i, m in enumerate(model.tail)] + [("bridge", model.bridge)]
        named += [(f"body.{i}", m) for i, m in enumerate(model.body)]
        named += [(f"head.{i}", m) for i, m in enumerate(model.head)]
        return named + [("classifier", model.classifier)]
    names = ("layer1", "layer2", "layer3", "layer4", "fc") if hasattr(model, "layer1") else \
        ("features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4", "classifier")
    return [(name, model.get_submodule(name)) for name in names]


def measure(name: str, size: tuple[int, int], classes: int) -> tuple[int, int]:
    """Parameters and multiply-accumulates, counted on the model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=classes).eval()
    return sum(p.numel() for p in model.parameters()), multiply_accumulates(model, size)


def table(size: tuple[int, int], classes: int) -> None:
    print(f"| model | parameters | GMACs at {size[0]}x{size[1]} | released top-1 | released top-5 |")
    print("|---|---:|---:|---:|---:|")
    for name in ORDER:
        params, macs = measure(name, size, classes)
        info = model_info(name)
        print(f"| {name} | {params:,} | {macs / 1e9:.3f} | {info.top1:.2f} | {info.top5:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"one or more of {', '.join(list_models())} (none: the table of all)")
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    size = tuple(args.size)
    unknown = [name for name in args.models if name not in list_models()]
    if unknown:
        parser.error(f"unknown model {unknown[0]}; choose from {', '.join(list_models())}")
    if not args.models:
        table(size, args.classes)
        return
    for name in args.models:
        params, macs = measure(name, size, args.classes)
        print(f"{name}: {params:,} parameters, {macs / 1e9:.3f} GMACs at {size[0]}x{size[1]} ({args.classes} classes)")
        with torch.device("meta"):
            model = create_model(name, num_classes=args.classes).eval()
            shapes = stage_shapes(model, torch.empty(1, 3, *size))
        for stage, shape in shapes:
            print(f"  {stage:<20} {shape}")


if __name__ == "__main__":
    main()
