"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's packages,
configured in a temporary directory and stopped afterwards (recipe: shared/docs/local-slurm.md)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel")
# A requeued job waits the step credential's lifetime before it starts again (120 s by default).
REQUEUE_DELAY_S = 5


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None."""
    absent = [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting SLURM's daemons needs root"
    return None


def _run(*cmd: str, env: dict | None = None, check: bool = True, timeout: float = 60,
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=check, timeout=timeout, cwd=cwd)


def start_munge() -> bool:
    """Start munged (as the munge user) unless it already answers; returns whether it was started."""
    if _run("sh", "-c", "munge -n | unmunge", check=False).returncode == 0:
        return False
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    _run("su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged")
    for _ in range(50):
        if _run("sh", "-c", "munge -n | unmunge", check=False).returncode == 0:
            return True
        time.sleep(0.1)
    raise RuntimeError("munged started but does not answer")


def write_config(folder: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    (folder / "state").mkdir(parents=True)
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=fishnet-test
SlurmctldHost={host}
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=cred_expire={REQUEUE_DELAY_S}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmUser=root
ReturnToService=2
MpiDefault=none
KillWait=30
MinJobAge=600
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb * 3 // 4} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class SlurmCluster:
    """The running cluster: ``env`` points SLURM's commands at it; ``stop`` ends it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = write_config(folder)
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started_munge = start_munge()
        _run("/usr/sbin/slurmctld", "-f", str(self.conf), env=self.env)
        _run("/usr/sbin/slurmd", "-f", str(self.conf), env=self.env)
        self._wait_idle()

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = _run("sinfo", "-h", "-o", "%t", env=self.env, check=False).stdout.strip()
            if out == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM node is not idle after {timeout} s; see {self.folder}/slurmctld.log")

    def sbatch(self, *args: str, cwd: Path, env: dict | None = None) -> int:
        """Submit from ``cwd`` with this process's environment (and ``env``); the job's id."""
        out = _run("sbatch", "--parsable", *args, env={**self.env, **(env or {})}, cwd=cwd).stdout
        return int(out.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, ...)."""
        out = _run("scontrol", "show", "job", "-o", str(job_id), env=self.env).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_done(self, job_id: int, timeout: float = 300) -> dict[str, str]:
        """The job's record once it has ended (not pending, running or requeued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(1)
        raise AssertionError(f"job {job_id} still {self.job(job_id).get('JobState')} after {timeout} s")

    def command(self, *cmd: str) -> subprocess.CompletedProcess:
        return _run(*cmd, env=self.env)

    def stop(self) -> None:
        _run("scontrol", "shutdown", env=self.env, check=False)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            path = self.folder / pid_file
            for _ in range(100):
                if not path.exists() or not _alive(int(path.read_text().strip() or 0)):
                    break
                time.sleep(0.1)
        if self.started_munge:
            pid = Path("/run/munge/munged.pid")
            if pid.exists() and pid.read_text().strip().isdigit():
                os.kill(int(pid.read_text().strip()), 15)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
