"""The two Hydra command-line apps, ``fishnet-train`` and ``fishnet-eval``."""
