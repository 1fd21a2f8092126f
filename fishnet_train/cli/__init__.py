"""The console scripts: ``fishnet-train``, ``fishnet-eval`` (Hydra apps) and ``fishnet-convert-checkpoint``."""
