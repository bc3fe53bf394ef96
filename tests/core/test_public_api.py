"""The public names of ``zoo`` resolve lazily and stay usable whatever was imported first."""

from __future__ import annotations

import subprocess
import sys

import zoo


def test_every_public_name_resolves():
    for name in zoo.__all__:
        assert getattr(zoo, name) is not None, name


def test_conv_einsum_callable_after_importing_the_subpackage_first():
    code = ("from zoo.conv_einsum import conv_einsum_path; import zoo, torch; "
            "x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3); "
            "y = zoo.conv_einsum('bshw,tshw->bthw|hw', x, w, padding=1); "
            "ref = torch.nn.functional.conv2d(x, w, padding=1); print(bool(torch.allclose(y, ref, atol=1e-5)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr
