"""BQN classifiers: a feature stack of BQN layers, a categorical linear head and the softmax scale s (Eq. 5.7).

Evaluation modes (section 5.4.1):
* ``"ai"`` analytic inference (default): log of the Eq. (5.8) bound per class (rows sum to <= 1 in probability),
  the chapter's AI: its NLL is an upper bound of the NLL of the propagated predictive;
* ``"ai-norm"``: the same bound normalised over the classes, a predictive distribution (rows sum to 1); the
  class-independent log-sum-exp cancels, so it equals softmax(mu/s) of the propagated logit means;
* ``"mc"``: log of the average of softmax(f(x; theta_s)/s) over S posterior samples theta_s ~ Q;
* ``"map"``: log_softmax(f(x; theta*)/s) at theta* = argmax Q.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from zoo_bqn.dist import Gaussian, mean_var
from zoo_bqn.layers import BayesLinear, BayesWeighted, Realisation, export_module, qnn_apply, realise
from zoo_bqn.levels import LevelSpec
from zoo_bqn.objective import log_lik_bound, prior_term
from zoo_bqn.quantized import QuantizedClassifier

MODES = ("ai", "ai-norm", "mc", "map")


class BQNClassifier(nn.Module):
    """``features`` (BQN layers, output units (B, F)) -> ``head`` BayesLinear(F, K) -> softmax(h / s).

    Args:
        features: ``nn.Sequential`` of BQN layers ending in a flat categorical/Gaussian (B, F).
        num_features: F.
        num_classes: K (0 gives an identity head: the model then returns features).
        levels: level set of the head's weights.
        init_scale: initial softmax scale s (learned as log s); default sqrt(F).
        mode / samples: default evaluation mode and Monte-Carlo sample count S.
        prior_weight / num_train: lambda and N of Eq. (5.15), used by :meth:`loss`.
    """

    def __init__(self, features: nn.Sequential, num_features: int, num_classes: int, levels: LevelSpec = "binary",
                 init_scale: Optional[float] = None, mode: str = "ai", samples: int = 10,
                 prior_weight: float = 1e-4, num_train: int = 60000) -> None:
        super().__init__()
        self.features = features
        self.num_features = num_features
        self.head_levels = levels
        self.num_classes = num_classes
        self.head: nn.Module = BayesLinear(num_features, num_classes, levels) if num_classes > 0 else nn.Identity()
        s0 = init_scale if init_scale is not None else math.sqrt(num_features)
        self.log_scale = nn.Parameter(torch.tensor(math.log(s0)))
        self.set_mode(mode, samples)
        self.prior_weight, self.num_train = float(prior_weight), int(num_train)

    # ------------------------------------------------------------------ timm-style classifier API
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh BayesLinear(F, num_classes) (identity for 0)."""
        self.num_classes = num_classes
        self.head = BayesLinear(self.num_features, num_classes, self.head_levels) if num_classes > 0 else nn.Identity()
        self.head.to(self.log_scale.device)

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
        """Analytic (sampling-free) propagation: Gaussian logits (B, K), or features for an identity head."""
        h = self.head(self.features(x))
        mean, var = mean_var(h)
        return Gaussian(mean, var)

    def qnn_logits(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        """Deterministic QNN pre-softmax outputs (B, K) for realised weights."""
        return qnn_apply(self.head, qnn_apply(self.features, x, weights), weights)

    def forward(self, x: torch.Tensor, mode: Optional[str] = None, samples: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Log-probabilities (B, K) of the predictive distribution under ``mode`` (default ``self.mode``).

        With an identity head the feature means (ai, ai-norm) or the averaged QNN features (mc/map) are returned.
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        identity = isinstance(self.head, nn.Identity)
        if mode in ("ai", "ai-norm"):
            g = self.propagate(x)
            if identity:
                return g.mean
            bound = log_lik_bound(g, self.scale)
            return bound if mode == "ai" else torch.log_softmax(bound, dim=-1)
        if mode == "map":
            out = self.qnn_logits(x, realise(self, "map"))
            return out if identity else torch.log_softmax(out / self.scale, dim=-1)
        s_count = samples if samples is not None else self.samples
        if s_count < 1:
            raise ValueError(f"samples (S) must be >= 1, got {s_count}")
        outs = [self.qnn_logits(x, realise(self, "sample", generator)) for _ in range(s_count)]
        if identity:
            return torch.stack(outs).mean(0)
        logp = torch.stack([torch.log_softmax(o / self.scale, dim=-1) for o in outs])
        return torch.logsumexp(logp, dim=0) - math.log(s_count)

    # ------------------------------------------------------------------ objective / export
    def prior_term(self) -> torch.Tensor:
        """R(theta) of Eq. (5.2) for a uniform prior over the levels (scalar)."""
        return prior_term(self)

    def export(self, mode: str = "map", generator: Optional[torch.Generator] = None) -> QuantizedClassifier:
        """A deterministic QNN with packed weights: the MAP network or one posterior sample."""
        if isinstance(self.head, nn.Identity):
            raise ValueError("export needs a classification head (num_classes > 0)")
        weights = realise(self, mode, generator)
        return QuantizedClassifier(export_module(self.features, weights), export_module(self.head, weights),
                                   self.scale.detach())

    def num_weights(self) -> int:
        """Number of categorical weights."""
        return sum(m.num_weights() for m in self.modules() if isinstance(m, BayesWeighted))
