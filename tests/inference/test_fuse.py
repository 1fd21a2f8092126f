import torch

from fishnet_train.inference import fuse_for_inference
from fishnet_train.models import FishNet


def test_folded_model_gives_the_same_outputs_and_leaves_the_original_alone():
    torch.manual_seed(0)
    model = FishNet((1,) * 10, (1,) * 6, num_classes=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, or folding is a no-op
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    model.eval()
    fused = fuse_for_inference(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert bn_count(fused) < bn_count(model) / 2  # conv->BN pairs are the majority


def bn_count(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
