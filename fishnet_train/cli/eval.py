"""``fishnet-eval``: evaluate a checkpoint with the published protocol."""
from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..engine.checkpoint_eval import evaluate_checkpoint
from .common import prepare_hydra, run_job


def overridden_keys() -> list[str]:
    """Keys given on the command line: they win over the sizes a checkpoint carries."""
    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    run_job(cfg, "eval.log", evaluate_checkpoint, overridden_keys())


def main() -> None:
    prepare_hydra("eval")
    hydra_main()


if __name__ == "__main__":
    main()
