"""What the command-line apps share before the job starts: run directories and the config check.

Nothing here imports torch, so a mistake in the config is answered in a fraction of a second.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import math
import os
import re
import sys
from datetime import datetime
from typing import Callable, Iterator

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..config import Options, TrainConfig, register_configs, to_options, to_plain
from ..errors import USER_ERROR_EXIT_CODE, UserError, user_message
from ..processes.launch_env import env_ranks
from ..processes.run_lock import RunDirLock, restart_wait_seconds
from ..recipe import check_same_recipe, resolve_lr
from ..validation import check_options, check_run_name


@functools.cache  # one name per process: the lock taken before Hydra starts is on Hydra's directory
def run_dir_name(base: str, name: str | None = None) -> str:
    """``base/<name>`` for a named run (``-<array task>`` added in a SLURM array), the same in every job that
    runs it; unnamed, the torchrun run id or the SLURM job (with the command line's hash), so that every rank
    and every restart of the job lands in the same directory; else a timestamp. Ranks other than 0 get ".":
    they learn rank 0's directory after joining the process group."""
    ranks = env_ranks()
    if ranks is not None and ranks[0] != 0:
        return "."
    array_task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if name is not None:
        check_run_name(str(name))
        return os.path.join(base, f"{name}-{array_task}" if array_task else str(name))
    if chosen_rdzv_id():
        leaf = f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    elif os.environ.get("SLURM_JOB_ID"):
        leaf = slurm_run_name(os.environ["SLURM_JOB_ID"], array_task, sys.argv[1:])
    else:
        leaf = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return os.path.join(base, leaf)


CHOSEN_DIRECTORY = re.compile(r"\+{0,2}(name|hydra\.run\.dir|hydra\.sweep\.dir)=(?!null$|$)")
RANDOM_RDZV_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def chosen_rdzv_id() -> bool:
    """Whether torchrun names its run: ``--rdzv-id``. ``--standalone`` draws a random id at each launch,
    which inside a SLURM job would lose the run at a requeue: there the job names it."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id == "none":
        return False
    return not (os.environ.get("SLURM_JOB_ID") and RANDOM_RDZV_ID.fullmatch(run_id))


def slurm_run_name(job_id: str, array_task: str | None, args: list[str]) -> str:
    """``slurm-<job>[-<array task>]-<command line's hash>``: a requeued job runs the same command and finds
    its directory again, while two commands in one allocation (two experiments in one batch script or
    salloc shell) get one each instead of resuming each other's checkpoints."""
    digest = hashlib.sha1("\0".join(args).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"slurm-{job_id}{f'-{array_task}' if array_task else ''}-{digest}"


def hydra_subdir(name: str) -> str | None:
    """Where Hydra keeps its own record of the run: rank 0 alone writes it."""
    ranks = env_ranks()
    return None if ranks is not None and ranks[0] != 0 else name


def run_app(config_name: str, hydra_main: Callable[[], None]) -> None:
    """A console script: the command line checked, the run directory locked while Hydra runs the job."""
    lock = check_and_lock(config_name)
    try:
        hydra_main()
    finally:
        if lock is not None:
            lock.release()


def check_and_lock(config_name: str) -> RunDirLock | None:
    """Register schemas and resolvers, check the command line's config, and lock the run
    directory of a single run; the lock is held until the process ends."""
    register_configs()
    # Cached: the submitit launcher copies a resolved sweep directory's cache into its jobs,
    # which run in processes of their own and would otherwise each name it anew.
    OmegaConf.register_new_resolver("fishnet_run_dir", run_dir_name, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("fishnet_hydra_subdir", hydra_subdir, replace=True)
    with one_line_errors():
        check_restartable(sys.argv[1:])
        run_dir = check_overrides(config_name, sys.argv[1:])
        return RunDirLock(run_dir, restart_wait_seconds()) if run_dir is not None else None


def check_restartable(args: list[str]) -> None:
    """Refuse, on every rank, a torchrun that restarts workers (``--max-restarts``) without
    ``--rdzv-id``: the run directory would be a new timestamp in each restarted worker, which
    would then start a fresh run instead of resuming."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    named = os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none" or os.environ.get("SLURM_JOB_ID")
    chosen = any(CHOSEN_DIRECTORY.match(a) for a in args)
    if restarts > 0 and not named and not chosen:
        raise UserError("torchrun without --rdzv-id gives its workers no name to find their run by after a "
                        "restart: name the run (name=<name>), pass --rdzv-id=<id> (or --standalone), or set "
                        "hydra.run.dir=<dir>")


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """A mistake in the command line: one line on stderr and exit 2 (``HYDRA_FULL_ERROR=1``: the traceback)."""
    try:
        yield
    except (HydraException, OmegaConfBaseException, UserError) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def check_overrides(config_name: str, args: list[str]) -> str | None:
    """Compose and check the config before Hydra starts the job, so that any mistake in it is one
    line and exit 2, not Hydra's multi-line report or a failure in a started job. Each value of a
    sweep (``-m``) is checked; with ``--help`` or ``--cfg`` only the composition (keys, types).

    Returns the run directory of a single run, for rank 0 (None for sweeps, flags, other ranks).
    """
    from hydra import compose, initialize_config_module
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags, _ = get_args_parser().parse_known_args(args)
    if flags.config_dir or flags.config_path or flags.config_name:
        return None  # the user's own config tree: Hydra composes it, the job checks it
    complete = not (flags.help or flags.hydra_help or flags.cfg or flags.info or flags.shell_completion)
    overrides = OverridesParser.create().parse_overrides(flags.overrides)
    with initialize_config_module("fishnet_train.conf", version_base="1.3"):
        for variant in override_variants([o for o in overrides if not o.is_hydra_override()]):
            cfg = compose(config_name, overrides=variant)
            if complete:
                options = to_options(cfg)
                check_options(options, planned_world_size(cfg))
        if not complete or flags.multirun or (env_ranks() or (0,))[0] != 0:
            return None
        hydra_cfg = compose(config_name, overrides=list(flags.overrides), return_hydra_config=True)
    run = OmegaConf.to_container(hydra_cfg.hydra.run, resolve=False)
    if isinstance(run, dict) and "${now:" in str(run["dir"]):
        return None  # a new directory each second, resolved anew by Hydra: nothing to lock
    run_dir = str(hydra_cfg.hydra.run.dir)
    # One process of several (srun, torchrun): rank 0 refusing here would leave the others waiting for it in
    # the process group; the job's own check refuses on every rank at once.
    if isinstance(options, TrainConfig) and env_ranks() is None:
        check_resubmission(options, run_dir)
    return run_dir


def check_resubmission(options: TrainConfig, run_dir: str) -> None:
    """A command that resumes a run (``trainer.resume=auto``, its last.pt there) keeps the run's recipe, checked
    against the run's config.yaml before Hydra writes its record of this command into the directory (the
    trainer checks again, against the checkpoint)."""
    saved = os.path.join(run_dir, "config.yaml")
    if options.trainer.resume != "auto" or not os.path.isfile(os.path.join(run_dir, "checkpoints", "last.pt")):
        return
    try:
        before = OmegaConf.to_container(OmegaConf.load(saved))
    except Exception:  # noqa: BLE001 - missing, or unreadable YAML: the checkpoint decides, in the job
        return
    check_same_recipe(before, to_plain(resolve_lr(options)[0]), os.path.abspath(run_dir))


MAX_CHECKED_COMBINATIONS = 64


def override_variants(overrides: list) -> Iterator[list[str]]:
    """Every combination of the sweeps' values (up to 64; beyond that each value once, the other
    sweeps at their first). Sweeps that cannot be listed here (glob, interval) are left to the jobs."""
    choices = []
    for o in overrides:
        try:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        except Exception:  # glob needs Hydra's config loader, interval has no values to list
            continue
        choices.append([o.input_line] if values is None else [f"{o.get_key_element()}={v}" for v in values])
    if math.prod(len(c) for c in choices) <= MAX_CHECKED_COMBINATIONS:
        yield from (list(combination) for combination in itertools.product(*choices))
        return
    first = [c[0] for c in choices]
    yield first
    for i, values in enumerate(choices):
        for value in values[1:]:
            yield first[:i] + [value] + first[i + 1:]


def planned_world_size(cfg: DictConfig) -> int | None:
    """The number of processes, where it is known before torch is loaded: the launcher's, or
    ``trainer.devices`` when it is a number (``auto`` depends on the GPUs)."""
    ranks = env_ranks()
    if ranks is not None:
        return ranks[1]
    devices = str(OmegaConf.select(cfg, "trainer.devices", default="auto"))
    return int(devices) if devices.isdigit() else None


def one_line(error: BaseException) -> str:
    """An error as one line: a UserError's own message; a composition error from the fields of
    the exception Hydra or OmegaConf raised."""
    if isinstance(error, UserError):
        return user_message(error)
    if isinstance(error, MissingConfigException) and error.options:
        group = os.path.dirname(error.missing_cfg_file or "")
        return f"no {error.missing_cfg_file!r} config; choose {group}= one of {', '.join(error.options)}"
    raised = error.__cause__ or error.__context__
    while raised is not None:  # our own check inside a resolver (the run directory's)
        if isinstance(raised, UserError):
            return user_message(raised)
        raised = raised.__cause__ or raised.__context__
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    head = str(error).splitlines()[0].rstrip(".")
    if cause is None:
        return head
    key = getattr(cause, "full_key", None)
    if isinstance(cause, MissingMandatoryValue) and key:
        return f"{key} is required: set {key}=..."
    detail = str(getattr(cause, "msg", None) or cause).splitlines()[0].rstrip(".")
    if key and key not in detail and key not in head:
        detail = f"{key}: {detail}"
    line = detail if cause is error else f"{head}: {detail}"
    return f"{line} (see --help for the keys and groups)"


def overridden_keys() -> list[str]:
    """Keys given on the command line: they win over the sizes a checkpoint carries."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [o.key_or_group for o in overrides]


def typed_options(cfg: DictConfig) -> Options:
    """The composed config converted once into its typed, frozen options (the jobs check them)."""
    try:
        return to_options(cfg)
    except OmegaConfBaseException as e:
        raise UserError(one_line(e)) from None
