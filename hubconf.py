"""torch.hub entry points: ``torch.hub.load(REPO_DIR, "fishnet150", source="local", weights=FILE)``.

``weights``: a released checkpoint, one of this project's or an exported safetensors file (local
paths; nothing is downloaded). ``num_classes``: a new classifier for fine-tuning when it differs
from the file's. ``features_only=True``: the head features at strides 4, 8, 16, 32 instead of logits.
"""
dependencies = ["torch", "torchvision", "safetensors"]


def fishnet99(weights=None, num_classes=None, features_only=False, **options):
    """FishNet-99: 16.6 M parameters, 77.41 / 93.59 % top-1 / top-5 released."""
    from fishnet_train.models.hub import hub_model

    return hub_model("fishnet99", weights, num_classes, features_only, **options)


def fishnet150(weights=None, num_classes=None, features_only=False, **options):
    """FishNet-150: 25.0 M parameters, 78.14 / 93.95 % top-1 / top-5 released."""
    from fishnet_train.models.hub import hub_model

    return hub_model("fishnet150", weights, num_classes, features_only, **options)


def fishnet201(weights=None, num_classes=None, features_only=False, **options):
    """FishNet-201: 44.6 M parameters, 78.76 / 94.39 % top-1 / top-5 released."""
    from fishnet_train.models.hub import hub_model

    return hub_model("fishnet201", weights, num_classes, features_only, **options)
