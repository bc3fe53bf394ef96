"""in_chans for the SC-Fac Lipschitz WideResNets (issue 19): the fixed input mix ``input_mix`` is timm's
``first_conv``; adapted models match the original on replicated inputs, certify with the mix's Lipschitz bound
(sqrt(3) for one grey channel), save and load back bit for bit; the registry model is unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import zoo
from zoo.hub.state import adapt_state_dict
from zoo_scfac.lipschitz import InputMix
from zoo_scfac.networks import LipschitzWideResNet
from zoo_scfac.robust import certified_radius, evaluate_robustness, jacobian_spectral_norm, pgd_l2

NAME = "sc-fac-wrn10-1-cifar10-small"
# Logits of the bundled model for torch.rand(4, 3, 32, 32) drawn with seed 123 (x[0]), computed before the mix existed.
REFERENCE_LOGITS_0 = [-0.003631382714956999, 0.12996171414852142, -0.16648539900779724, -0.004888427909463644,
                      -0.00670679472386837, -0.1017400473356247, -0.06783439964056015, 0.11523640900850296,
                      -0.17690561711788177, 0.11754163354635239]


@pytest.fixture(scope="module")
def original() -> LipschitzWideResNet:
    return zoo.create(NAME, pretrained=True).eval()


@pytest.fixture(scope="module")
def checkpoint(original: LipschitzWideResNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model saved with its (identity) input mix: a file whose first_conv the zoo can adapt."""
    return zoo.save_pretrained(original, tmp_path_factory.mktemp("scfac") / "rgb") / "model.safetensors"


def _adapted(checkpoint: Path, in_chans: int) -> LipschitzWideResNet:
    return zoo.create(NAME, checkpoint_path=checkpoint, in_chans=in_chans).eval()


def _images(channels: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_registry_model_is_unchanged_by_the_identity_mix(original: LipschitzWideResNet) -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        logits = original(x)
        without_mix = original.forward_head(original.blocks(original.stem(original.normalize(x))))
    assert torch.equal(original.input_mix.weight.flatten(1), torch.eye(3))
    assert torch.equal(logits, without_mix)  # bit for bit: the identity mix changes no value
    assert torch.allclose(logits[0], torch.tensor(REFERENCE_LOGITS_0), rtol=0, atol=1e-6)
    assert original.lipschitz_bound == 1.0


def test_the_mix_is_timm_adapt_input_conv_of_the_identity() -> None:
    from timm.models import adapt_input_conv

    for in_chans in (1, 2, 4, 6, 9):
        expected = adapt_input_conv(in_chans, torch.eye(3).reshape(3, 3, 1, 1))
        assert torch.equal(InputMix(in_chans, 3).weight, expected), in_chans


def test_old_state_dicts_without_the_mix_load(original: LipschitzWideResNet) -> None:
    old = {k: v for k, v in original.state_dict().items() if k != "input_mix.weight"}
    fresh = zoo.create(NAME).eval()
    fresh.load_state_dict(old)  # strict: the pre-hook supplies input_mix.weight
    assert torch.equal(fresh.input_mix.weight.flatten(1), torch.eye(3))
    grey = zoo.create(NAME, in_chans=1).eval()
    grey.load_state_dict(old)
    assert torch.equal(grey.input_mix.weight.flatten(), torch.ones(3))


def test_grey_model_equals_the_original_on_the_replicated_image(original, checkpoint) -> None:
    grey = _adapted(checkpoint, 1)
    assert tuple(grey.input_mix.weight.shape) == (3, 1, 1, 1)
    x = _images(1)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), original(x.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)


def test_six_channel_model_on_a_doubled_image_equals_the_original(original, checkpoint) -> None:
    six = _adapted(checkpoint, 6)
    x = _images(3)
    with torch.no_grad():
        torch.testing.assert_close(six(torch.cat([x, x], 1)), original(x), rtol=0, atol=1e-5)
    assert six.lipschitz_bound == pytest.approx(1 / math.sqrt(2), rel=1e-12)  # [I/2, I/2]


def test_adapting_the_models_own_state_dict_with_the_core_rule(original) -> None:
    """zoo.hub.state.adapt_state_dict (timm's rule) on the in-memory state dict, loaded strictly."""
    state = dict(original.state_dict())
    adapt_state_dict(state, classifier="head", drop_classifier=False, first_conv="input_mix", in_chans=1)
    grey = zoo.create(NAME, in_chans=1).eval()
    grey.load_state_dict(state)
    x = _images(1, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), original(x.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)


def test_pretrained_bundled_weights_adapt_to_one_channel(original) -> None:
    """The bundled file predates input_mix (its sha256 is fixed): the core leaves a fixed mix the file lacks to the
    model built for in_chans, whose mix is timm's adaptation of the identity."""
    grey = zoo.create(NAME, pretrained=True, in_chans=1).eval()
    assert torch.equal(grey.input_mix.weight, torch.ones_like(grey.input_mix.weight))
    x = _images(1)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), original(x.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)


def test_adapted_model_saves_and_loads_back_bit_for_bit(checkpoint, tmp_path: Path) -> None:
    grey = _adapted(checkpoint, 1)
    folder = zoo.save_pretrained(grey, tmp_path / "grey")
    back = zoo.create(f"local-dir:{folder}", pretrained=True).eval()
    mine, theirs = grey.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    x = _images(1, seed=2)
    with torch.no_grad():
        assert torch.equal(grey(x), back(x))


def test_the_grey_stem_stretches_perturbations_by_exactly_sqrt3(checkpoint) -> None:
    """Finite differences through mix -> mean -> orthogonal stem conv (an isometry, 3 -> 16 channels): every grey
    perturbation grows by sqrt(3), so a certificate with bound 1 would be false."""
    grey = _adapted(checkpoint, 1)
    stem = torch.nn.Sequential(grey.input_mix, grey.normalize, grey.stem[0])
    x, d = _images(1, n=2, seed=5), 1e-2 * torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        gain = (stem(x + d) - stem(x)).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
    torch.testing.assert_close(gain, torch.full((2,), math.sqrt(3)), rtol=1e-4, atol=0)
    assert grey.lipschitz_bound == pytest.approx(math.sqrt(3), rel=1e-12)


def test_grey_certificates_use_sqrt3_and_hold(original, checkpoint) -> None:
    grey = _adapted(checkpoint, 1)
    x = _images(1, n=8, seed=7)
    with torch.no_grad():
        logits = grey(x)
    y = logits.argmax(1)
    res = evaluate_robustness(grey, x, y, eps=0.01, pgd_steps=2, batch_size=8)
    radius = certified_radius(logits, y, math.sqrt(3))
    assert res["mean_certified_radius"] == pytest.approx(float(radius.mean()), rel=1e-6)
    assert res["mean_certified_radius"] == pytest.approx(
        float(certified_radius(logits, y, 1.0).mean()) / math.sqrt(3), rel=1e-6)
    for i in range(3):  # the certified radius is at most the one a measured local Lipschitz constant would give
        local = jacobian_spectral_norm(grey, x[i:i + 1], iters=30)
        assert local <= math.sqrt(3) * (1 + 1e-4)
        assert float(radius[i]) <= float(certified_radius(logits[i:i + 1], y[i:i + 1], local)[0]) + 1e-9
    adv = pgd_l2(grey, x, y, radius * 0.999, steps=20, clamp=False)  # no attack inside the radius flips a prediction
    assert ((adv - x).flatten(1).norm(dim=1) <= radius * 0.999 + 1e-6).all()
    with torch.no_grad():
        assert torch.equal(grey(adv).argmax(1), y)


def test_a_flow_builds_for_other_channels_but_refuses_to_move_its_density() -> None:
    """A Residual Flow is a bijection of its input space: ``in_chans`` builds a fresh flow on C-channel images
    (its log-determinant is finite and its latent has C*H*W entries), while pretrained weights for one channel are
    refused with that reason rather than loaded into a different density."""
    flow = zoo.create("sc-fac-resflow-mnist-small", in_chans=3).eval()
    assert flow.in_shape == (3, 28, 28) and flow.pretrained_cfg["input_size"] == (3, 28, 28)
    z, logdet = flow(torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert z.shape == (2, 3 * 28 * 28) and bool(torch.isfinite(logdet).all())
    with pytest.raises(zoo.WeightsError, match=r"pretrained weights of 'sc-fac-resflow-mnist-small' for 1 input "
                                               r"channel\(s\) cannot be adapted to in_chans=3: a normalizing flow "
                                               r"maps its input space onto itself"):
        zoo.create("sc-fac-resflow-mnist-small", pretrained=True, in_chans=3)
