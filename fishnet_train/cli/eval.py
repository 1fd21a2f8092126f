"""``fishnet-eval``: evaluate a checkpoint with the published protocol."""
from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..config import validate_config
from ..engine.checkpoint_eval import evaluate_checkpoint
from ..engine.distributed import env_ranks, launch_local, local_process_count
from ..engine.reporting import setup_logging
from .common import exit_codes, launch_failed, prepare_hydra


def overridden_keys() -> list[str]:
    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]


def worker(cfg_yaml: str, run_dir: str, overridden: list[str]) -> None:
    """One process of a local multi-process evaluation."""
    setup_logging(os.path.join(run_dir, "eval.log") if os.environ.get("RANK", "0") == "0" else None)
    with exit_codes():
        evaluate_checkpoint(OmegaConf.create(cfg_yaml), run_dir, overridden)


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    ranks = env_ranks()
    setup_logging(os.path.join(run_dir, "eval.log") if ranks is None or ranks[0] == 0 else None)
    with exit_codes():
        validate_config(cfg)
        nprocs = local_process_count(str(cfg.trainer.devices), cfg.trainer.device)
        if nprocs > 1 and ranks is None:
            try:
                launch_local(nprocs, worker, OmegaConf.to_yaml(cfg), run_dir, overridden_keys())
            except Exception as e:
                sys.exit(launch_failed(e))
        else:
            evaluate_checkpoint(cfg, run_dir, overridden_keys())


def main() -> None:
    prepare_hydra("eval")
    hydra_main()


if __name__ == "__main__":
    main()
