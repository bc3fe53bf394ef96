"""BQN classifiers: a fixed input-channel mix, a trunk of BQN layers, the flatten / hidden layers before the head, a
categorical linear head and the softmax scale s (Eq. 5.7).

Evaluation modes (section 5.4.1):
* ``"ai"`` analytic inference (default): log of the Eq. (5.8) bound per class (rows sum to <= 1 in probability),
  the chapter's AI: its NLL is an upper bound of the NLL of the propagated predictive;
* ``"ai-norm"``: the same bound normalised over the classes, a predictive distribution (rows sum to 1); the
  class-independent log-sum-exp cancels, so it equals softmax(mu/s) of the propagated logit means;
* ``"mc"``: log of the average of softmax(f(x; theta_s)/s) over S posterior samples theta_s ~ Q;
* ``"map"``: log_softmax(f(x; theta*)/s) at theta* = argmax Q.

timm's model API reads analytic inference: ``forward_features`` returns the distribution of the trunk's C output
units as a moment map, their means then their variances along dimension 1 ((B, 2C, H, W) for a CNN, (B, 2C) for an
MLP; ``num_features`` = 2C), all the head's first (CLT) layer reads, so ``forward_head(forward_features(x))`` is
``forward(x)``. The head's ``pre_logits`` are the means of the classifier's F inputs (``head_hidden_size`` = F).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx
from torch import nn

from zoo_bqn.dist import Dist, Gaussian, gaussian_of_moments, mean_var, moment_map, unit_means
from zoo_bqn.layers import (BayesLinear, BayesWeighted, ChannelMix, Realisation, export_module, qnn_apply,
                            realise)
from zoo_bqn.levels import LevelSpec
from zoo_bqn.objective import log_lik_bound, prior_term
from zoo_bqn.quantized import QuantizedClassifier

MODES = ("ai", "ai-norm", "mc", "map")
ANALYTIC = ("ai", "ai-norm")
POOLS = ("flatten", "")
"""``global_pool``: "flatten" (the trunk's units flattened for the head) or "" (none: the moment map itself)."""


def _traced_defaults(x: torch.Tensor, mode: Any, samples: Any, generator: Any) -> torch.Tensor:
    """Run-time check of an FX graph of a BQN, which was traced for the default mode: refuses other arguments, else
    returns the input ``x`` (so that the check stays in the graph's data flow, which dead-code elimination keeps)."""
    if mode is not None or samples is not None or generator is not None:
        raise ValueError(f"this FX graph of a BQN computes its default mode only; got mode={mode!r}, "
                         f"samples={samples!r}, generator={generator!r}: call the model itself for those")
    return x


# FX calls these as functions (graph nodes) instead of tracing them: they dispatch on the distribution type
for _name in ("_traced_defaults", "moment_map", "gaussian_of_moments", "unit_means"):
    torch.fx.wrap(_name)


class BQNClassifier(nn.Module):
    """``stem`` -> ``features`` -> ``pre_logits`` -> ``head`` BayesLinear(F, K) -> softmax(h / s).

    Args:
        stem: the fixed input-channel mix (the model's ``first_conv``), (B, in_chans, H, W) -> the channels
            ``features`` reads.
        features: ``nn.Sequential`` of BQN layers (the trunk), C output units per position.
        feature_units: C.
        pre_logits: ``nn.Sequential`` of BQN layers from the trunk's units to the head's F inputs (Flatten, hidden
            layers), starting with a layer that reads moments only (Flatten or BayesLinear).
        head_in: F.
        num_classes: K (0 gives an identity head: the model then returns the means of the F inputs).
        levels: level set of the head's weights.
        feature_info: timm's feature maps: ``num_chs`` (2 x the units: a moment map), ``reduction`` and ``module``
            (``features.<i>``, the layer whose output it is), in order; empty for a network without maps.
        init_scale: initial softmax scale s (learned as log s); default sqrt(F).
        mode / samples: default evaluation mode and Monte-Carlo sample count S.
        prior_weight / num_train: lambda and N of Eq. (5.15), used by :meth:`loss`.
    """

    def __init__(self, stem: ChannelMix, features: nn.Sequential, feature_units: int, pre_logits: nn.Sequential,
                 head_in: int, num_classes: int, levels: LevelSpec = "binary",
                 feature_info: Sequence[Dict[str, Any]] = (), init_scale: Optional[float] = None, mode: str = "ai",
                 samples: int = 10, prior_weight: float = 1e-4, num_train: int = 60000) -> None:
        super().__init__()
        self.stem, self.features, self.pre_logits = stem, features, pre_logits
        self.feature_units, self.num_features = feature_units, 2 * feature_units
        self.head_hidden_size = head_in
        self.head_levels = levels
        self.num_classes = num_classes
        self.global_pool = "flatten"
        self.head: nn.Module = BayesLinear(head_in, num_classes, levels) if num_classes > 0 else nn.Identity()
        s0 = init_scale if init_scale is not None else math.sqrt(head_in)
        self.log_scale = nn.Parameter(torch.tensor(math.log(s0)))
        if feature_info:
            self.feature_info = [dict(info) for info in feature_info]
        self.register_load_state_dict_pre_hook(_identity_stem_if_absent)
        self.set_mode(mode, samples)
        self.prior_weight, self.num_train = float(prior_weight), int(num_train)

    # ------------------------------------------------------------------ timm-style classifier API
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head by a fresh BayesLinear(F, num_classes) (identity for 0). ``global_pool=""`` returns the
        trunk's moment map unflattened (then ``num_classes`` must be 0: the head reads flat units)."""
        pool = self.global_pool if global_pool is None else global_pool
        if pool not in POOLS:
            raise ValueError(f"global_pool must be one of {POOLS}, got {pool!r}")
        if pool == "" and num_classes > 0:
            raise ValueError(f"global_pool='' leaves the trunk's units unflattened, which a head of {num_classes} "
                             f"classes cannot read: use num_classes=0 with it, or global_pool='flatten'")
        self.global_pool = pool
        self.num_classes = num_classes
        self.head = BayesLinear(self.head_hidden_size, num_classes, self.head_levels) if num_classes > 0 \
            else nn.Identity()
        self.head.to(self.log_scale.device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> the trunk's moment map (B, num_features, H', W') (analytic inference)."""
        self._require_analytic("forward_features")
        return moment_map(self.features(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """A moment map of :meth:`forward_features` -> log-probabilities (B, K) under the analytic mode, or the
        means of the classifier's inputs (B, F) with ``pre_logits`` (the map itself when ``global_pool=""``)."""
        self._require_analytic("forward_head")
        return self._analytic_head(x, self.mode, pre_logits)

    def forward_intermediates(self, x: torch.Tensor, indices: Union[int, List[int], None] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> Any:
        """timm's ``forward_intermediates``: the moment maps of ``feature_info`` selected by ``indices`` (all by
        default), and the final features (those of :meth:`forward_features`) unless ``intermediates_only``."""
        from zoo.intermediates import run_stages

        self._require_analytic("forward_intermediates")
        final, maps = run_stages(self._stages(), x, indices, output_fmt, stop_early, intermediates_only)
        maps = [moment_map(m) for m in maps]
        return maps if intermediates_only else (moment_map(final), maps)

    def _stages(self) -> List[nn.Module]:
        """The stem and trunk cut after each ``feature_info`` module: stage i ends with the i-th feature map."""
        info = getattr(self, "feature_info", None)
        if not info:
            raise ValueError(f"{type(self).__name__} has no feature maps (no feature_info): its trunk ends in flat "
                             f"units")
        ends = [int(i["module"].rsplit(".", 1)[1]) + 1 for i in info]
        layers = list(self.features)
        starts = [0] + ends[:-1]
        stages = [nn.Sequential(*layers[a:b]) for a, b in zip(starts, ends)]
        stages[0] = nn.Sequential(self.stem, *stages[0])
        return stages

    def _require_analytic(self, what: str) -> None:
        if self.mode not in ANALYTIC:
            raise ValueError(f"{what} reads analytic inference (mode 'ai' or 'ai-norm'); the model's mode is "
                             f"{self.mode!r}: set_mode('ai') first, or call the model itself for {self.mode!r}")

    # ------------------------------------------------------------------ modes
    def set_mode(self, mode: str, samples: Optional[int] = None) -> "BQNClassifier":
        """Select the default evaluation mode ("ai", "ai-norm", "mc", "map") and S for "mc"."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if samples is not None and samples < 1:
            raise ValueError(f"samples (S) must be >= 1, got {samples}")
        self.mode = mode
        if samples is not None:
            self.samples = int(samples)
        return self

    @property
    def scale(self) -> torch.Tensor:
        """Softmax scale s > 0 (Eq. 5.7)."""
        return self.log_scale.exp()

    def propagate(self, x: torch.Tensor) -> Gaussian:
        """Analytic (sampling-free) propagation: Gaussian logits (B, K), or the head's inputs for an identity head."""
        h = self.head(self.pre_logits(gaussian_of_moments(moment_map(self.features(self.stem(x))))))
        mean, var = mean_var(h)
        return Gaussian(mean, var)

    def _analytic_head(self, t: torch.Tensor, mode: str, pre_logits: bool) -> torch.Tensor:
        if self.global_pool == "":
            return t
        h: Dist = self.pre_logits(gaussian_of_moments(t))
        if pre_logits or isinstance(self.head, nn.Identity):
            return unit_means(h)
        bound = log_lik_bound(self.head(h), self.scale)
        return bound if mode == "ai" else torch.log_softmax(bound, dim=-1)

    def qnn_logits(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        """Deterministic QNN pre-softmax outputs (B, K) for realised weights (the trunk's output (B, C, H', W') when
        ``global_pool=""``)."""
        h = qnn_apply(self.features, self.stem(x), weights)
        if self.global_pool == "":
            return h
        return qnn_apply(self.head, qnn_apply(self.pre_logits, h, weights), weights)

    def forward(self, x: torch.Tensor, mode: Optional[str] = None, samples: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Log-probabilities (B, K) of the predictive distribution under ``mode`` (default ``self.mode``).

        With an identity head: the means of the head's inputs (ai, ai-norm: analytic; map: the QNN's; mc: averaged
        over the samples); with ``global_pool=""`` the trunk's moment map (map: variances 0; mc: over the samples).
        """
        if isinstance(mode, torch.fx.Proxy):  # FX makes every argument a placeholder: trace the default mode
            x = _traced_defaults(x, mode, samples, generator)
            mode = samples = generator = None
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode in ANALYTIC:
            return self._analytic_head(moment_map(self.features(self.stem(x))), mode, pre_logits=False)
        if mode == "map":
            return self._qnn_output(torch.stack([self.qnn_logits(x, realise(self, "map"))]))
        s_count = samples if samples is not None else self.samples
        if s_count < 1:
            raise ValueError(f"samples (S) must be >= 1, got {s_count}")
        return self._qnn_output(torch.stack([self.qnn_logits(x, realise(self, "sample", generator))
                                             for _ in range(s_count)]))

    def _qnn_output(self, outs: torch.Tensor) -> torch.Tensor:
        """S QNN outputs (S, B, ...) -> the model's output: the log of the averaged softmax(out / s) (B, K), or for
        an identity head the averaged outputs, or for ``global_pool=""`` their moment map."""
        if self.global_pool == "":
            return torch.cat([outs.mean(0), outs.var(0, unbiased=False)], 1)
        if isinstance(self.head, nn.Identity):
            return outs.mean(0)
        logp = torch.log_softmax(outs / self.scale, dim=-1)
        return torch.logsumexp(logp, dim=0) - math.log(outs.shape[0])

    # ------------------------------------------------------------------ objective / export
    def prior_term(self) -> torch.Tensor:
        """R(theta) of Eq. (5.2) for a uniform prior over the levels (scalar)."""
        return prior_term(self)

    def export(self, mode: str = "map", generator: Optional[torch.Generator] = None) -> QuantizedClassifier:
        """A deterministic QNN with packed weights: the MAP network or one posterior sample."""
        if isinstance(self.head, nn.Identity):
            raise ValueError("export needs a classification head (num_classes > 0)")
        weights = realise(self, mode, generator)
        body = nn.Sequential(export_module(self.stem, weights), export_module(self.features, weights),
                             export_module(self.pre_logits, weights))
        return QuantizedClassifier(body, export_module(self.head, weights), self.scale.detach())

    def num_weights(self) -> int:
        """Number of categorical weights."""
        return sum(m.num_weights() for m in self.modules() if isinstance(m, BayesWeighted))


def _identity_stem_if_absent(model: BQNClassifier, state: Dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: a state dict written before the input mix existed (no ``stem.weight``) was an
    identity mix; it loads into a model whose mix is square (in_chans == stem_chans)."""
    key = prefix + "stem.weight"
    if key not in state and model.stem.in_chans == model.stem.out_chans:
        eye = torch.eye(model.stem.out_chans, dtype=model.stem.weight.dtype)
        state[key] = eye.reshape(model.stem.weight.shape)


def stage_info(channels: Sequence[Tuple[int, int, int]]) -> List[Dict[str, Any]]:
    """timm ``feature_info`` of a trunk from (units, reduction, index in ``features``) of each feature map."""
    return [{"num_chs": 2 * c, "reduction": r, "module": f"features.{i}"} for c, r, i in channels]
