"""compress(): Layer-Decomp, E2E-KD and Seq-KD on a small LeNet-5 teacher."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from zoo_tnn.backbones import build_backbone
from zoo_tnn.compress import assign_blocks, block_output, compress, forward_order


FIT = {"sweeps": 4}


@pytest.fixture(scope="module")
def setup() -> tuple:
    torch.manual_seed(0)
    teacher = build_backbone("lenet5").eval()
    x = torch.randn(96, 1, 28, 28)
    with torch.no_grad():
        y = teacher(x).argmax(-1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    return teacher, x, loader


def _logit_mse(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(a(x), b(x)))


def test_layer_decomp_reports_errors_and_rate(setup: tuple) -> None:
    teacher, x, loader = setup
    before = copy.deepcopy(teacher.state_dict())
    student, rep = compress(teacher, "mtt", 0.1, loader, method="layer-decomp", eval_loader=loader,
                           fit_kwargs=FIT, progress=False)
    assert set(rep.layer_errors) == {"conv2", "fc1", "fc2"}
    assert all(0.0 < e < 1.0 for e in rep.layer_errors.values())
    assert rep.tensorial_rate <= 0.1 and rep.accuracy_teacher == 1.0
    assert rep.params == sum(p.numel() for p in student.parameters())
    assert rep.block_losses == []
    for k, v in teacher.state_dict().items():  # the teacher is untouched
        torch.testing.assert_close(v, before[k])
    assert "relative reconstruction error" in rep.summary()


def test_e2e_kd_reduces_the_output_distance(setup: tuple) -> None:
    teacher, x, loader = setup
    ld, _ = compress(teacher, "mcp", 0.1, loader, method="layer-decomp", fit_kwargs=FIT, progress=False)
    student, rep = compress(teacher, "mcp", 0.1, loader, method="e2e-kd", epochs=8, fit_kwargs=FIT,
                           progress=False)
    assert [b["block"] for b in rep.block_losses] == ["<all>"] * 8
    assert rep.block_losses[-1]["mean_loss"] < rep.block_losses[0]["first_loss"]
    assert _logit_mse(student, teacher, x) < 0.8 * _logit_mse(ld, teacher, x)


def test_seq_kd_tunes_blocks_bottom_up_on_intermediate_outputs(setup: tuple) -> None:
    teacher, x, loader = setup
    ld, _ = compress(teacher, "cp", 0.1, loader, method="layer-decomp", fit_kwargs=FIT, progress=False)
    student, rep = compress(teacher, "cp", 0.1, loader, method="seq-kd", epochs=8, fit_kwargs=FIT,
                           progress=False)
    blocks = [b["block"] for b in rep.block_losses]
    assert blocks == ["conv2"] * 8 + ["fc1"] * 8 + ["fc2"] * 8
    for name in ("conv2", "fc1", "fc2"):
        target = block_output(teacher, name, x, grad=False)
        after = F.mse_loss(block_output(student, name, x, grad=False), target)
        before = F.mse_loss(block_output(ld, name, x, grad=False), target)
        assert after < before, name
    assert _logit_mse(student, teacher, x) < _logit_mse(ld, teacher, x)


def test_seq_kd_with_named_blocks_and_forward_order() -> None:
    torch.manual_seed(0)
    teacher = build_backbone("resnet20").eval()
    x = torch.randn(8, 3, 16, 16)
    loader = DataLoader(TensorDataset(x), batch_size=4)
    assert forward_order(teacher, x, ["layer2.0", "layer1.1", "layer1.0"]) == ["layer1.0", "layer1.1", "layer2.0"]
    student, rep = compress(teacher, "mtt", 0.2, loader, method="seq-kd", blocks=["layer2.0", "layer1.0"],
                            epochs=1, fit_kwargs={"sweeps": 2}, progress=False)
    order = [b["block"] for b in rep.block_losses]
    assert order[:2] == ["layer1.0", "layer2.0"]
    # layers after the last named block become blocks of their own, bottom-up
    assert order[2:] == ["layer2.1.conv1", "layer2.1.conv2", "layer2.2.conv1", "layer2.2.conv2",
                         "layer3.0.conv1", "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2",
                         "layer3.2.conv1", "layer3.2.conv2"]
    owned = assign_blocks(student, x, ["layer1.0", "layer2.0"], [r.name for r in student.tnn_layers
                                                                   if r.status == "tensorized"])
    assert owned["layer1.0"] == ["layer1.0.conv1", "layer1.0.conv2"]
    assert owned["layer2.0"][:2] == ["layer1.1.conv1", "layer1.1.conv2"] and "layer2.0.conv2" in owned["layer2.0"]


def test_seq_kd_on_post_activation_blocks(setup: tuple) -> None:
    teacher, x, loader = setup
    student, rep = compress(teacher, "mcp", 0.1, loader, method="seq-kd", blocks=["act2", "act3", "act4"],
                            epochs=2, fit_kwargs=FIT, progress=False)
    assert [b["block"] for b in rep.block_losses] == ["act2"] * 2 + ["act3"] * 2 + ["act4"] * 2
    owned = assign_blocks(student, x, ["act2", "act3", "act4"], ["conv2", "fc1", "fc2"])
    assert owned == {"act2": ["conv2"], "act3": ["fc1"], "act4": ["fc2"]}


def test_bad_method(setup: tuple) -> None:
    teacher, _, loader = setup
    with pytest.raises(ValueError, match="method must be one of"):
        compress(teacher, "cp", 0.1, loader, method="magic")
    with pytest.raises(ValueError, match=r"tune must be one of \('tensorial', 'all'\), got 'bn'"):
        compress(teacher, "cp", 0.1, loader, tune="bn")


@pytest.mark.parametrize("tune", ["tensorial", "all"])
def test_seq_kd_tunes_what_runs_before_each_stage(tune: str) -> None:
    """The official code's Seq-KD (phase1.py): a ResNet's stages as blocks, each training every variable in it and
    the stem with the first; ``tune="tensorial"`` keeps to the factors (Eq. 2.10). Nothing after the last block moves,
    and batch-norm statistics never do."""
    torch.manual_seed(0)
    teacher = build_backbone("resnet20").eval()
    x = torch.randn(8, 3, 16, 16)
    loader = DataLoader(TensorDataset(x), batch_size=4)
    ld, _ = compress(teacher, "cp", 0.2, loader, method="layer-decomp", fit_kwargs={"sweeps": 2}, progress=False)
    torch.manual_seed(0)
    student, rep = compress(teacher, "cp", 0.2, loader, method="seq-kd", blocks=["layer1", "layer2", "layer3"],
                            tune=tune, epochs=2, fit_kwargs={"sweeps": 2}, progress=False)
    assert [b["block"] for b in rep.block_losses] == ["layer1"] * 2 + ["layer2"] * 2 + ["layer3"] * 2
    before, after = ld.state_dict(), student.state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    tensorial = {k for k in after if ".factors." in k}
    assert len(tensorial) == 18 * 4 and tensorial <= moved  # 18 convolutions in the stages, 4 CP factors each
    affine = {k for k in after if k.endswith((".weight", ".bias")) and "bn" in k}
    assert {"bn1.weight", "layer1.0.bn1.bias", "layer3.2.bn2.weight"} <= affine
    if tune == "all":  # the stem conv1 and bn1 run before layer1, so its sub-problem tunes them
        assert affine | {"conv1.weight"} <= moved
    else:
        assert not moved & (affine | {"conv1.weight"})
    assert not {k for k in moved if k.startswith("fc.") or "running_" in k or "num_batches" in k}


class _Interrupting:
    """A shuffling loader that raises KeyboardInterrupt on its ``stop_at``-th batch (counted over all epochs)."""

    def __init__(self, loader: DataLoader, stop_at: int) -> None:
        self.loader, self.stop_at, self.seen = loader, stop_at, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.seen += 1
            if self.seen == self.stop_at:
                raise KeyboardInterrupt
            yield batch


# 3 batches an epoch, 2 epochs a unit; seq-kd draws batch 1 as its probe, so block act2 reads batches 2-7, act3
# 8-13 and act4 14-19: stop 15 falls in act4's first epoch, stop 6 in act2's second; e2e-kd's stop 5 in epoch 2
@pytest.mark.parametrize("method,stop_at,done,epoch", [("seq-kd", 15, 2, 0), ("seq-kd", 6, 0, 1), ("e2e-kd", 5, 1, 0)])
def test_an_interrupted_compression_resumes_to_the_same_student(setup: tuple, tmp_path, method: str, stop_at: int,
                                                               done: int, epoch: int) -> None:
    teacher, x, _ = setup
    data = TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
    # a shuffled loader draws from the global RNG: the checkpoint's RNG state must make the order repeat
    options = dict(method=method, epochs=2, blocks=["act2", "act3", "act4"] if method == "seq-kd" else None,
                   fit_kwargs=FIT, progress=False)
    torch.manual_seed(1)
    straight, _ = compress(teacher, "mcp", 0.1, DataLoader(data, batch_size=32, shuffle=True), **options)
    torch.manual_seed(1)
    path = tmp_path / "progress.pt"
    with pytest.raises(KeyboardInterrupt):
        compress(teacher, "mcp", 0.1, _Interrupting(DataLoader(data, batch_size=32, shuffle=True), stop_at),
                 checkpoint=path, **options)
    saved = torch.load(path, weights_only=True)
    assert (saved["done"], saved["epoch"]) == (done, epoch)
    assert (saved["optimizer"] is not None) == (epoch > 0 or method == "e2e-kd")  # Adam's moments mid-unit
    torch.manual_seed(123)  # whatever the process did since: the saved state decides
    resumed, report = compress(teacher, "mcp", 0.1, DataLoader(data, batch_size=32, shuffle=True),
                               checkpoint=path, **options)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    blocks = [row["block"] for row in report.block_losses]
    assert len(blocks) == (6 if method == "seq-kd" else 2)  # the report keeps the rows written before the stop
    with pytest.raises(ValueError, match=r"holds a .* run of mcp at rate 0.1, not .* of mcp at 0.2"):
        compress(teacher, "mcp", 0.2, DataLoader(data, batch_size=32), checkpoint=path, **options)
    # loaded again once finished (train.py --resume --publish): the same student and the same report, time included
    again, report_again = compress(teacher, "mcp", 0.1, DataLoader(data, batch_size=32, shuffle=True),
                                   checkpoint=path, **options)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in resumed.state_dict().items())
    assert report_again.as_dict() == report.as_dict()
