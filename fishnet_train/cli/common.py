"""What both command-line apps share: run directories, logging, and turning errors into exit codes."""
from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime
from typing import Any, Callable, Iterator

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException

from ..config import register_configs, validate_config
from ..engine.distributed import env_ranks, launch_local, local_process_count
from ..engine.reporting import setup_logging
from ..engine.signals import PREEMPTED_EXIT_CODE, Preempted
from ..errors import UserError

USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130


def run_dir_name(base: str) -> str:
    """``base/<id>``: the SLURM job or torchrun run id when there is one, so that every rank
    and every restart of the job lands in the same directory; else a timestamp."""
    if os.environ.get("SLURM_JOB_ID"):
        name = f"slurm-{os.environ['SLURM_JOB_ID']}"
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            name += f"-{os.environ['SLURM_ARRAY_TASK_ID']}"
    elif os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        name = f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    else:
        name = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return os.path.join(base, name)


def prepare_hydra(config_name: str) -> None:
    """Register schemas and resolvers, check the overrides, and keep non-zero ranks from
    making run directories."""
    register_configs()
    OmegaConf.register_new_resolver("fishnet_run_dir", run_dir_name, replace=True)
    check_overrides(config_name, sys.argv[1:])
    ranks = env_ranks()
    if ranks is not None and ranks[0] != 0:
        # They learn rank 0's directory after joining the process group.
        sys.argv += ["hydra.run.dir=.", "hydra.output_subdir=null"]


def check_overrides(config_name: str, args: list[str]) -> None:
    """Compose the config once up front so that a typo'd key or a wrong type is one line
    and exit 2, not Hydra's multi-line report. Flags (--help, -m, --cfg) are left to Hydra."""
    if any(a.startswith("-") for a in args) or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_module("fishnet_train.conf", version_base="1.3"):
            compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


_NOISE = ("full_key:", "object_type=", "reference_type=", "To append", "Set the environment")


def _one_line(error: BaseException) -> str:
    """Hydra's report (and its cause) folded into one line without the bookkeeping lines."""
    texts = [str(error)]
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in str(error):
        texts.append(str(cause))
    lines = [line.strip() for text in texts for line in text.splitlines()]
    lines = [line.rstrip(".:") for line in lines if line and not line.startswith(_NOISE)]
    head, options = [], []
    for line in lines:
        if head and head[-1].startswith("Available options"):
            if " " not in line and "=" not in line:  # option names; search-path lines follow
                options.append(line)
        else:
            head.append(line)
    text = "; ".join(head)
    return f"{text}: {', '.join(options)}" if options else f"{text} (see --help for the keys and groups)"


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """User errors: one line on stderr and exit 2; preemption: exit 75; Ctrl-C: exit 130."""
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        yield
    except UserError as e:
        if full:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    except Preempted as e:
        print(f"preempted: {e}; resume with trainer.resume=auto", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)
    except KeyboardInterrupt:
        print("interrupted: checkpoints already written are intact", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)


def launch_failed(error: BaseException) -> int:
    """Exit code for a failed local multi-process launch (the workers printed why)."""
    failures = getattr(error, "failures", {}) or {}
    codes = [f.exitcode for f in failures.values() if getattr(f, "exitcode", None)]
    if any(code == PREEMPTED_EXIT_CODE for code in codes):
        return PREEMPTED_EXIT_CODE
    if any(code == USER_ERROR_EXIT_CODE for code in codes):
        return USER_ERROR_EXIT_CODE
    return codes[0] if codes else 1


def run_job(cfg: DictConfig, log_name: str, job: Callable[..., Any], *job_args: Any,
            precheck: Callable[[DictConfig], Any] | None = None) -> None:
    """Run ``job(cfg, run_dir, *job_args)`` in this process, or in ``trainer.devices`` local
    processes started by the elastic launcher (unless a launcher already started us)."""
    run_dir = HydraConfig.get().runtime.output_dir
    ranks = env_ranks()
    setup_logging(os.path.join(run_dir, log_name) if ranks is None or ranks[0] == 0 else None)
    with exit_codes():
        validate_config(cfg)
        nprocs = local_process_count(str(cfg.trainer.devices), cfg.trainer.device)
        if nprocs > 1 and ranks is None:
            if precheck is not None:
                precheck(cfg)  # fail on a bad input here, not in N workers
            try:
                launch_local(nprocs, local_worker, log_name, job, OmegaConf.to_yaml(cfg), run_dir, *job_args)
            except SignalException:  # SIGTERM here reached the workers too; they saved and stopped
                print("preempted: the workers saved last.pt; resume with trainer.resume=auto", file=sys.stderr)
                sys.exit(PREEMPTED_EXIT_CODE)
            except Exception as e:  # the workers already printed their own errors
                sys.exit(launch_failed(e))
        else:
            job(cfg, run_dir, *job_args)


def local_worker(log_name: str, job: Callable[..., Any], cfg_yaml: str, run_dir: str, *job_args: Any) -> None:
    """One process of a local multi-process run."""
    setup_logging(os.path.join(run_dir, log_name) if os.environ.get("RANK", "0") == "0" else None)
    with exit_codes():
        job(OmegaConf.create(cfg_yaml), run_dir, *job_args)
