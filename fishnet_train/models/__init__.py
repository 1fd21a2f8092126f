"""FishNet and the paper's baselines: builders, a registry, and weight loading (released checkpoints too)."""
from .baselines import DenseNet, ResNet
from .fishnet import FishNet, fishnet99, fishnet150, fishnet201
from .registry import ModelInfo, Network, classifier_prefix, create_model, list_models, model_info
from .released import ours_to_released, released_to_ours
from .weights import infer_arch, load_weights, read_checkpoint

__all__ = [
    "DenseNet", "FishNet", "ModelInfo", "Network", "ResNet", "classifier_prefix", "create_model", "fishnet99",
    "fishnet150", "fishnet201", "list_models", "infer_arch", "load_weights", "model_info", "ours_to_released",
    "read_checkpoint", "released_to_ours",
]
