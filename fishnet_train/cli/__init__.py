"""The console scripts: ``fishnet-train``, ``fishnet-eval`` (Hydra apps), ``fishnet-convert-checkpoint`` and
``fishnet-prepare``."""
