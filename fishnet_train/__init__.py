"""fishnet-train: train and evaluate FishNet on ImageNet-style ImageFolder data."""

__version__ = "0.1.0"
