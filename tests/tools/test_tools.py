import subprocess
import sys
from pathlib import Path

import torch

from fishnet_train.models import create_model, load_weights

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_model_info_prints_parameters_macs_and_stage_shapes():
    result = run_tool("tools/model_info.py", "fishnet99", "--size", "225", "300")
    assert result.returncode == 0, result.stderr
    assert "16,628,904 parameters" in result.stdout
    assert "head.2      (1, 2112, 7, 9)" in result.stdout


def test_convert_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("fishnet99", num_classes=4).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pt")
    for src, dst, to in (("ours.pt", "released.tar", "released"), ("released.tar", "back.pt", "ours")):
        result = run_tool("tools/convert_checkpoint.py", str(tmp_path / src), str(tmp_path / dst), "--to", to)
        assert result.returncode == 0, result.stderr
    released = torch.load(tmp_path / "released.tar", weights_only=True)
    assert set(released) == {"epoch", "arch", "state_dict", "best_prec1", "optimizer"}
    assert next(iter(released["state_dict"])).startswith("module.conv1.0")
    back = load_weights(create_model("fishnet99", num_classes=4), tmp_path / "back.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
