"""Parameters, MACs and per-stage output shapes of a FishNet.

    python tools/model_info.py fishnet150 [--size 224 224] [--classes 1000]
"""
from __future__ import annotations

import argparse

import torch

from fishnet_train.models import create_model, list_models
from fishnet_train.models.complexity import multiply_accumulates


def stage_shapes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of every stage, in execution order, via forward hooks."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    stages = [("stem", model.stem)]
    stages += [(f"tail.{i}", m) for i, m in enumerate(model.tail)] + [("bridge", model.bridge)]
    stages += [(f"body.{i}", m) for i, m in enumerate(model.body)]
    stages += [(f"head.{i}", m) for i, m in enumerate(model.head)]
    stages += [("classifier", model.classifier)]
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape))))
             for name, m in stages]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=list_models())
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    with torch.device("meta"):
        model = create_model(args.model, num_classes=args.classes).eval()
        x = torch.empty(1, 3, *args.size)
    params = sum(p.numel() for p in model.parameters())
    macs = multiply_accumulates(model, tuple(args.size))
    print(f"{args.model}: {params:,} parameters, {macs / 1e9:.3f} GMACs at "
          f"{args.size[0]}x{args.size[1]} ({args.classes} classes)")
    for name, shape in stage_shapes(model, x):
        print(f"  {name:<11} {shape}")


if __name__ == "__main__":
    main()
