"""Running the real console scripts on tiny data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
# FishNet-99 at 32 px on 3 tiny classes: a CPU step takes a fraction of a second. At 32 px
# the deepest features are 1x1, where BN over a few samples gives huge gradients: clip them.
TINY_TRAIN = [
    "experiment=demo", "data.batch_size=6", "data.workers=0", "optim.lr=0.002", "trainer.clip_grad_norm=2.0",
    "trainer.epochs=2", "trainer.deterministic=true", "data.crop_scale=[0.5,1.0]",
]


def run_cli(command: str, *args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run([str(BIN / command), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def train(data: Path, run_dir: Path, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli("fishnet-train", *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}", *overrides, **kwargs)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one line on stderr holding every fragment, no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip() and "it/s" not in line and "s/it" not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
