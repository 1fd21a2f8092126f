"""``fishnet-eval``: evaluate a checkpoint with the published protocol."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .common import overridden_keys, run_app


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    # Imported once the config has passed its check: torch takes seconds to load.
    from ..apps.evaluator import check_eval_inputs, run_eval
    from .jobs import run_job

    run_job(cfg, "eval.log", run_eval, overridden_keys(), precheck=check_eval_inputs)


def main() -> None:
    run_app("eval", hydra_main)


if __name__ == "__main__":
    main()
