import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_model_info_prints_parameters_macs_and_stage_shapes():
    result = run_tool("tools/model_info.py", "fishnet99", "--size", "225", "300")
    assert result.returncode == 0, result.stderr
    assert "16,628,904 parameters" in result.stdout
    assert "head.2      (1, 2112, 7, 9)" in result.stdout
