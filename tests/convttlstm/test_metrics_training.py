"""Metrics against closed forms / an independent SSIM, and the training hooks (loss, scheduled sampling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from zoo_convttlstm.metrics import (LPIPSUnavailable, evaluate, lpips_per_frame, mse_per_frame, psnr_per_frame,
                                    ssim_per_frame)
from zoo_convttlstm.network import VideoPredictionNet
from zoo_convttlstm.training import (ScheduledSampling, l1_l2_loss, load_checkpoint, make_optimizer,
                                     optimizer_step, save_checkpoint, training_step)


def _ssim_scipy(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with scipy's Gaussian filter (sigma 1.5, 11 taps), valid region."""
    f = lambda a: gaussian_filter(a, 1.5, truncate=3.5, mode="constant")[5:-5, 5:-5]
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def test_mse_psnr_closed_form():
    truth = torch.zeros(2, 3, 1, 4, 4)
    pred = truth + torch.tensor([0.1, 0.2, 0.5]).view(1, 3, 1, 1, 1)
    assert torch.allclose(mse_per_frame(pred, truth), torch.tensor([0.01, 0.04, 0.25]))
    assert torch.allclose(psnr_per_frame(pred, truth), torch.tensor([20.0, 10 * math.log10(25), 10 * math.log10(4)]))


def test_ssim_against_independent_reference():
    rng = np.random.default_rng(0)
    x = rng.random((2, 2, 1, 20, 18))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    got = ssim_per_frame(torch.from_numpy(y), torch.from_numpy(x))
    ref = [np.mean([_ssim_scipy(y[b, t, 0], x[b, t, 0]) for b in range(2)]) for t in range(2)]
    assert np.allclose(got.numpy(), ref, atol=1e-10)
    assert torch.allclose(ssim_per_frame(torch.from_numpy(x), torch.from_numpy(x)), torch.ones(2, dtype=torch.float64))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        mse_per_frame(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_frame(torch.zeros(1, 1, 1, 8, 8), torch.zeros(1, 1, 1, 8, 8))


def test_lpips_reports_why_it_is_missing():
    x = torch.rand(1, 1, 1, 16, 16)
    try:
        v = lpips_per_frame(x, x)
    except LPIPSUnavailable as err:
        assert "LPIPS" in str(err) and "not" in str(err)
        out = evaluate(x.expand(1, 1, 1, 16, 16), x, with_lpips=True)
        assert out["lpips"] is None and "LPIPS" in out["lpips_unavailable"]
    else:
        assert v.shape == (1,) and float(v) < 1e-6


def test_scheduled_sampling_starts_on_plateau_and_decays():
    ss = ScheduledSampling(patience=1, decay=0.25)
    ratios = [ss.update(v) for v in [1.0, 0.9, 0.95, 0.93, 0.8, 0.7, 0.7, 0.7]]
    assert ratios == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    restored = ScheduledSampling()
    restored.load_state_dict(ss.state_dict())
    assert restored.state_dict() == ss.state_dict()


def test_training_step_loss_and_checkpoint_resume(tmp_path):
    torch.manual_seed(0)
    m = VideoPredictionNet(1, "convttlstm", hidden_channels=(3, 3), layers_per_block=(1, 1), skip_stride=None,
                           kernel_size=3, cell_kwargs=dict(order=2, steps=2, ranks=2))
    x, y = torch.rand(2, 3, 1, 6, 6), torch.rand(2, 2, 1, 6, 6)
    m.eval()
    loss = training_step(m, (x, y), None)
    pred = m(x, future_frames=2, return_all=True)
    truth = torch.cat([x[:, 1:], y], 1)
    assert torch.allclose(loss, (pred - truth).abs().mean() + (pred - truth).square().mean())
    with pytest.raises(ValueError, match="differ in shape"):
        l1_l2_loss(pred, truth[:, 1:])
    with pytest.raises(ValueError, match=r"\(inputs, targets\)"):
        training_step(m, x, None)
    m.train()
    opt, sched = make_optimizer(m)
    ss = ScheduledSampling()
    ss.apply(m)
    optimizer_step(m, training_step(m, (x, y), None), opt)
    save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=opt, scheduler=sched, sampling=ss, epoch=3)
    m2 = VideoPredictionNet(1, "convttlstm", hidden_channels=(3, 3), layers_per_block=(1, 1), skip_stride=None,
                            kernel_size=3, cell_kwargs=dict(order=2, steps=2, ranks=2))
    opt2, sched2 = make_optimizer(m2)
    rest = load_checkpoint(tmp_path / "ck.pt", model=m2, optimizer=opt2, scheduler=sched2, sampling=ScheduledSampling())
    assert rest == {"epoch": 3}
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
