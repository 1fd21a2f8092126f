"""The console scripts: ``fishnet-train``, ``fishnet-eval``, ``fishnet-predict``, ``fishnet-export`` (Hydra apps),
``fishnet-convert-checkpoint``, ``fishnet-prepare`` and ``fishnet-average``."""
