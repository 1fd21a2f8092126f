"""FishNet models: builders, a registry, and weight loading (released checkpoints too)."""
from .fishnet import FishNet, fishnet99, fishnet150, fishnet201
from .registry import ModelInfo, create_model, list_models, model_info
from .released import ours_to_released, released_to_ours
from .weights import infer_arch, load_weights, read_checkpoint

__all__ = [
    "FishNet", "ModelInfo", "create_model", "fishnet99", "fishnet150", "fishnet201", "list_models",
    "infer_arch", "load_weights", "model_info", "ours_to_released", "read_checkpoint", "released_to_ours",
]
