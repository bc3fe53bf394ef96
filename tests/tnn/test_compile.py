"""torch.compile of tensorial models: no graph break inside the tensorial layers (issue 20, item 7).

The evaluation of each layer is chosen per input shape outside the traced region (``_traced_plan_key`` is a
``torch._dynamo.assume_constant_result``), so a whole tensorial ResNet traces as one graph, cold (no plan made
yet) or warm, in training and in eval mode, and gives what eager gives. ``backend="aot_eager"`` keeps it quick on
the CPU (it traces forward and backward as inductor would, without generating code).
"""

import pytest
import torch

import zoo
from torch._dynamo.utils import counters


def _compiled_run(model, x, train):
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    if train:
        out = compiled(x)
        out.square().mean().backward()
        out2 = compiled(x)  # second call: served by the same graph
    else:
        with torch.no_grad():
            out = compiled(x)
            out2 = compiled(x)
    return out, out2


@pytest.mark.parametrize("name", ["resnet32-tt-10pct", "resnet18-mtt-10pct"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_compile_has_no_graph_break_and_matches_eager(name, train):
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10).train(train)
    x = torch.randn(4, 3, 32, 32)
    eager = zoo.create(name, num_classes=10).train(train)
    eager.load_state_dict(model.state_dict())

    out, out2 = _compiled_run(model, x, train)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1

    if train:
        ref = eager(x)
        ref.square().mean().backward()
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        grads = dict(model.named_parameters())
        for n, p in eager.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(grads[n].grad, p.grad, rtol=1e-4, atol=1e-5, msg=n)
        assert any(p.grad is not None for p in grads.values())
    else:
        with torch.no_grad():
            ref = eager(x)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out2, ref, rtol=1e-4, atol=1e-5)


def test_compiled_eval_sees_factor_changes():
    """Eval under compile reads the factors on every call (no stale cached kernel) and a changed ``path_ratio``
    recompiles with the new choice."""
    from zoo_tnn.layers import TensorialConv2d

    torch.manual_seed(0)
    layer = TensorialConv2d(16, 16, 3, padding=1, decomposition="tt", rate=0.3).eval()
    layer.path_ratio = 0.0  # the dense choice in inference (rebuilt kernel, F.conv2d)
    x = torch.randn(2, 16, 8, 8)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(layer, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer.to_dense()(x), rtol=1e-4, atol=1e-5)
        for p in layer.factors.values():
            p.mul_(1.5)
        torch.testing.assert_close(compiled(x), layer.to_dense()(x), rtol=1e-4, atol=1e-5)
        layer.path_ratio = 100.0  # now the factorised path
        torch.testing.assert_close(compiled(x), layer.to_dense()(x), rtol=1e-4, atol=1e-5)
    assert next(iter(layer.inference_costs.values()))["chosen"] == "factorized"
    assert sum(counters["graph_break"].values()) == 0
