"""Running a job once its config is known good: exit codes, logging, local multi-process launches."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Callable, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch.distributed.elastic.multiprocessing.api import SignalException

from ..config import EvalConfig, Options, TrainConfig
from ..errors import USER_ERROR_EXIT_CODE, UserError
from ..processes.distributed import launch_local, local_process_count
from ..processes.launch_env import env_ranks
from ..processes.peers import PeerFailed
from ..processes.run_lock import RunDirLock, restart_wait_seconds
from ..processes.runtime import setup_logging
from ..processes.signals import PREEMPTED_EXIT_CODE, STOP_SIGNALS, Preempted
from ..validation import check_options
from .common import one_line, typed_options

INTERRUPTED_EXIT_CODE = 130
Job = Callable[..., Any]  # job(options, run_dir, *args)


def say(line: str) -> None:
    """One line on stderr in one write, so that the lines of processes sharing it never interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """User errors: one line on stderr and exit 2; preemption: exit 75; Ctrl-C: exit 130; another
    rank's failure: that rank's exit code."""
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        yield
    except UserError as e:
        if full:
            raise
        say(f"error: {one_line(e)}")
        sys.exit(USER_ERROR_EXIT_CODE)
    except Preempted as e:
        say(f"preempted: {e}; resume with trainer.resume=auto")
        sys.exit(PREEMPTED_EXIT_CODE)
    except PeerFailed as e:  # its own line is the failing rank's
        say(f"stopping: {e}")
        sys.exit(e.code)
    except KeyboardInterrupt:
        say("interrupted: checkpoints already written are intact")
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


def run_job(cfg: DictConfig, log_name: str, job: Job, *job_args: Any,
            precheck: Callable[[Any], Any] | None = None, multi_process: bool = True,
            log_to_stderr: bool = False) -> None:
    """Run ``job(options, run_dir, *job_args)`` in this process, or (``multi_process``) in
    ``trainer.devices`` local processes started by the elastic launcher (unless a launcher already started us).
    ``log_to_stderr``: the job's own output is stdout (fishnet-predict's table), so the log goes to stderr."""
    run_dir = HydraConfig.get().runtime.output_dir
    ranks = env_ranks()
    main_process = ranks is None or ranks[0] == 0
    # A sweep's jobs lock their own directories; a single run's was locked before Hydra started.
    sweep = main_process and HydraConfig.get().mode == RunMode.MULTIRUN
    with exit_codes(), contextlib.ExitStack() as held:
        if sweep:
            held.callback(RunDirLock(run_dir, restart_wait_seconds()).release)
        setup_logging(os.path.join(run_dir, log_name) if main_process else None,
                      sys.stderr if log_to_stderr else None)
        options = typed_options(cfg)
        nprocs = 1
        if multi_process and isinstance(options, (TrainConfig, EvalConfig)):
            nprocs = local_process_count(str(options.trainer.devices), options.trainer.device)
        if nprocs > 1 and ranks is None:
            check_options(options, world_size=nprocs)  # fail here, not in N workers
            if precheck is not None:
                precheck(options)
            launch_workers(nprocs, log_name, job, options, run_dir, *job_args)
        else:
            job(options, run_dir, *job_args)


def launch_workers(nprocs: int, log_name: str, job: Job, options: Options, run_dir: str, *job_args: Any) -> None:
    try:
        launch_local(nprocs, local_worker, log_name, job, options, run_dir, *job_args)
    except SignalException as e:  # the launcher passed the signal on to the workers and waited for them
        sys.exit(launcher_signalled(e.sigval))
    except Exception as e:  # the workers already printed their own errors
        sys.exit(launch_failed(e))


def launcher_signalled(signum: int) -> int:
    """The launcher's exit code and line after a signal: Ctrl-C is an interrupt (130), the stop
    signals a preemption (75: the workers finished their step and saved last.pt)."""
    if signum == signal.SIGINT:
        say("interrupted: checkpoints already written are intact")
        return INTERRUPTED_EXIT_CODE
    if signum not in STOP_SIGNALS:  # SIGHUP, SIGQUIT: the workers died of it too
        say(f"stopped by {signal.Signals(signum).name}; resume from the last checkpoint with trainer.resume=auto")
        return 128 + signum
    say(f"preempted by {signal.Signals(signum).name}: the workers saved last.pt at their step; resume with "
        "trainer.resume=auto")
    return PREEMPTED_EXIT_CODE


def local_worker(log_name: str, job: Job, options: Options, run_dir: str, *job_args: Any) -> None:
    """One process of a local multi-process run."""
    setup_logging(os.path.join(run_dir, log_name) if os.environ.get("RANK", "0") == "0" else None)
    with exit_codes():
        job(options, run_dir, *job_args)
