"""Recurrent cells: the ConvLSTM baseline (Eq. 4.2) and the Conv-TT-LSTM (Eq. 4.8-4.12, Fig. 4.1).

Both cells are functional in their state: ``h, state = cell(x, state)`` with ``x`` (B, Cin, H, W),
``h`` (B, Cout, H, W); ``state = cell.init_state(x)`` gives the zero initial state (Sec. 4.7.2).
Gates are ordered [I; F; C~; O] as in Eq. 4.1a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .convops import BACKENDS, PADDING_MODES, check_choice, same_conv2d

WINDOWS = ("sliding", "fixed")


def _check_kernel(kernel_size: int) -> int:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer (same-size convolutions), got {kernel_size!r}")
    return kernel_size


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _lstm_update(gates: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4.1b: gates (B, 4C, H, W) ordered [i, f, g, o], cell state c (B, C, H, W) -> (h, c)."""
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class ConvLSTMCell(nn.Module):
    """First-order ConvLSTM: ``[I;F;C~;O] = sigma(W * X(t) + K * H(t-1))`` (Eq. 4.2), one fused K x K convolution."""

    input_kernel = "weight"
    """The parameter whose first ``in_channels`` input channels read X(t)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        bias: bool = True,
        padding_mode: str = "zeros",
        backend: str = "torch",
    ) -> None:
        super().__init__()
        self.in_channels = _check_positive("in_channels", in_channels)
        self.hidden_channels = _check_positive("hidden_channels", hidden_channels)
        self.kernel_size = _check_kernel(kernel_size)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.backend = check_choice("backend", backend, BACKENDS)
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(4 * hidden_channels, in_channels + hidden_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_channels)) if bias else None
        nn.init.xavier_normal_(self.weight)

    def init_state(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c), each (B, hidden, H, W), matching ``x`` (B, Cin, H, W)."""
        b, _, hh, ww = x.shape
        z = x.new_zeros(b, self.hidden_channels, hh, ww)
        return z, z

    def macs(self, height: int, width: int) -> int:
        """Multiplications of one step on an H x W map (padding taps counted)."""
        return self.weight.numel() * height * width

    def forward(
        self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """x (B, Cin, H, W), state (h, c) -> (h_new, (h_new, c_new))."""
        _check_input(x, self.in_channels, type(self).__name__)
        h, c = self.init_state(x) if state is None else state
        gates = same_conv2d(torch.cat([x, h], dim=1), self.weight, self.bias, self.padding_mode, self.backend)
        h, c = _lstm_update(gates, c)
        return h, (h, c)


@dataclass
class TTState:
    """State of a Conv-TT-LSTM cell.

    h: last hidden state H(t-1) (B, C, H, W), not yet preprocessed (``None`` = zero initial state);
    c: cell state (B, C, H, W);
    history: preprocessed contributions Y(t-2), Y(t-3), ... of older hidden states (most recent first),
        each (B, sum_i D*C(i), H, W) or ``None`` for the zero initial state.
    """

    h: Optional[torch.Tensor]
    c: torch.Tensor
    history: List[Optional[torch.Tensor]]


def _check_input(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{who} expects input (batch, {channels}, height, width), got shape {tuple(x.shape)}")


class ConvTTLSTMCell(nn.Module):
    """Conv-TT-LSTM cell (Eq. 4.11): ``gates = W * X(t) + CTT(H~(1), ..., H~(N); G(1), ..., G(N))``.

    Args:
        in_channels, hidden_channels: Cin and Cout.
        order: N, order of the convolutional tensor-train decomposition.
        steps: M >= N, number of previous hidden states the cell sees.
        ranks: C(1..N), channels of the pre-processed states (int or one value per factor).
        kernel_size: K, filter size of every factor G(i), of W and of the preprocessing kernels P(i).
        window: "sliding" (Eq. 4.12b, D = M - N + 1 states per window) or "fixed" (Eq. 4.12a, all M states).

    Implementation (linear in N): H~(i) = P(i) * [window of states] (Eq. 4.10); each past state is convolved
    once with all P(i) kernels when it enters the history, and the CTT sum of Eq. 4.9 is evaluated by
    Horner's rule ``T_N = H~(N)``, ``T_i = H~(i) + G(i+1) * T_{i+1}``, ``CTT = G(1) * T_1``, which equals
    ``sum_i K(i) * H~(i)`` with the composite kernels ``K(i) = G(1) o ... o G(i)`` of Eq. 4.8.
    ``W`` and ``G(1)`` share one parameter (4 Cout, Cin + C(1), K, K) but are applied as two convolutions.
    """

    input_kernel = "gate_weight"
    """The parameter whose first ``in_channels`` input channels read X(t) (``W``)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        order: int = 3,
        steps: int = 5,
        ranks: Union[int, Sequence[int]] = 8,
        kernel_size: int = 5,
        window: str = "sliding",
        bias: bool = True,
        padding_mode: str = "zeros",
        backend: str = "torch",
    ) -> None:
        super().__init__()
        self.in_channels = _check_positive("in_channels", in_channels)
        self.hidden_channels = _check_positive("hidden_channels", hidden_channels)
        self.order = _check_positive("order", order)
        self.steps = _check_positive("steps", steps)
        if steps < order:
            raise ValueError(f"steps (M) must be >= order (N); got steps={steps}, order={order}")
        self.window = check_choice("window", window, WINDOWS)
        self.kernel_size = _check_kernel(kernel_size)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.backend = check_choice("backend", backend, BACKENDS)
        if isinstance(ranks, int):
            ranks = [ranks] * order
        ranks = [int(r) for r in ranks]
        if len(ranks) != order or any(r < 1 for r in ranks):
            raise ValueError(f"ranks must be a positive int or {order} positive ints (one per factor), got {ranks}")
        self.ranks: Tuple[int, ...] = tuple(ranks)
        # D: number of states in each preprocessing window.
        self.window_size = steps - order + 1 if window == "sliding" else steps
        k, d, ch = kernel_size, self.window_size, hidden_channels
        # W and G(1) stored together: (4 Cout, Cin + C(1), K, K).
        self.gate_weight = nn.Parameter(torch.empty(4 * ch, in_channels + ranks[0], k, k))
        self.gate_bias = nn.Parameter(torch.zeros(4 * ch)) if bias else None
        # G(i), i = 2..N: (C(i-1), C(i), K, K).
        self.tt_weights = nn.ParameterList(
            [nn.Parameter(torch.empty(ranks[i - 1], ranks[i], k, k)) for i in range(1, order)]
        )
        self.tt_biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(ranks[i - 1])) for i in range(1, order)] if bias else []
        )
        # P(i), i = 1..N, stacked: output channel blocks (i, d) of size C(i); input Cout.
        self.prep_weight = nn.Parameter(torch.empty(d * sum(ranks), ch, k, k))
        self.prep_bias = nn.Parameter(torch.zeros(sum(ranks))) if bias else None
        nn.init.xavier_normal_(self.gate_weight)
        for w in self.tt_weights:
            nn.init.xavier_normal_(w)
        for i in range(order):  # Xavier per P(i): fan over its window (D * Cout in, C(i) out).
            blk = self.prep_weight[self._prep_slice(i)]
            nn.init.xavier_normal_(blk.view(ranks[i], d * ch, k, k))

    # ----- layout helpers -------------------------------------------------------------------------
    def _prep_slice(self, i: int) -> slice:
        """Rows of ``prep_weight`` that hold P(i+1) (0-based i), laid out (d, C(i+1))."""
        start = self.window_size * sum(self.ranks[:i])
        return slice(start, start + self.window_size * self.ranks[i])

    def lag(self, i: int, d: int) -> int:
        """Time lag of the d-th state (0-based) in the window of H~(i) (1-based i): Eq. 4.12."""
        return i + d if self.window == "sliding" else 1 + d

    def factor(self, i: int) -> torch.Tensor:
        """G(i) (1-based) as (C(i-1), C(i), K, K), with C(0) = 4 Cout (cross-correlation layout)."""
        if not 1 <= i <= self.order:
            raise IndexError(f"factor index must be in 1..{self.order}, got {i}")
        return self.gate_weight[:, self.in_channels :] if i == 1 else self.tt_weights[i - 2]

    def factor_bias(self, i: int) -> Optional[torch.Tensor]:
        """Bias added after G(i) (i >= 2); the gate bias for i = 1."""
        if self.gate_bias is None:
            return None
        return self.gate_bias if i == 1 else self.tt_biases[i - 2]

    def preprocessing_kernel(self, i: int) -> torch.Tensor:
        """P(i) (1-based) as (C(i), D, Cout, K, K); window entry d acts on H(t - lag(i, d))."""
        w = self.prep_weight[self._prep_slice(i - 1)]
        k = self.kernel_size
        return w.view(self.window_size, self.ranks[i - 1], self.hidden_channels, k, k).transpose(0, 1)

    def preprocessing_bias(self, i: int) -> Optional[torch.Tensor]:
        if self.prep_bias is None:
            return None
        start = sum(self.ranks[: i - 1])
        return self.prep_bias[start : start + self.ranks[i - 1]]

    @property
    def input_weight(self) -> torch.Tensor:
        """W, the input-to-gates kernel (4 Cout, Cin, K, K)."""
        return self.gate_weight[:, : self.in_channels]

    # ----- recurrence -----------------------------------------------------------------------------
    def init_state(self, x: torch.Tensor) -> TTState:
        """Zero state for an input ``x`` (B, Cin, H, W)."""
        b, _, hh, ww = x.shape
        return TTState(h=None, c=x.new_zeros(b, self.hidden_channels, hh, ww), history=[])

    def macs(self, height: int, width: int) -> int:
        """Multiplications of one step on an H x W map (padding taps counted)."""
        n = self.gate_weight.numel() + sum(w.numel() for w in self.tt_weights) + self.prep_weight.numel()
        return n * height * width

    def preprocessed(self, history: Sequence[Optional[torch.Tensor]], like: torch.Tensor) -> List[torch.Tensor]:
        """H~(1..N) (each (B, C(i), H, W)) from ``history`` = [Y(t-1), Y(t-2), ...] (Eq. 4.10/4.12)."""
        b, _, hh, ww = like.shape
        out = []
        for i in range(1, self.order + 1):
            r = self.ranks[i - 1]
            start = self.window_size * sum(self.ranks[: i - 1])
            acc: Optional[torch.Tensor] = None
            for d in range(self.window_size):
                lag = self.lag(i, d)
                y = history[lag - 1] if lag <= len(history) else None
                if y is None:
                    continue
                part = y[:, start + d * r : start + (d + 1) * r]
                acc = part if acc is None else acc + part
            if acc is None:
                acc = like.new_zeros(b, r, hh, ww)
            bias = self.preprocessing_bias(i)
            out.append(acc if bias is None else acc + bias.view(1, -1, 1, 1))
        return out

    def tensor_train(self, x: torch.Tensor, tilde: Sequence[torch.Tensor]) -> torch.Tensor:
        """Gates ``W * x + CTT(H~; G)`` by Horner's rule; x (B, Cin, H, W) -> (B, 4 Cout, H, W)."""
        t = tilde[-1]
        for i in range(self.order - 1, 0, -1):  # T_i = H~(i) + G(i+1) * T_{i+1}
            bias = self.tt_biases[i - 1] if len(self.tt_biases) else None
            t = tilde[i - 1] + same_conv2d(t, self.tt_weights[i - 1], bias, self.padding_mode, self.backend)
        # W * x and G(1) * T_1 as two convolutions: faster than one on [x; T_1] on CPU and it saves no
        # concatenated copy for backward (x is already kept by the layer below), see benchmarks/convttlstm.md
        gates = same_conv2d(x, self.input_weight, self.gate_bias, self.padding_mode, self.backend)
        return gates + same_conv2d(t, self.factor(1), None, self.padding_mode, self.backend)

    def forward(self, x: torch.Tensor, state: Optional[TTState] = None) -> Tuple[torch.Tensor, TTState]:
        """x (B, Cin, H, W), state -> (h_new (B, Cout, H, W), new state)."""
        _check_input(x, self.in_channels, type(self).__name__)
        if state is None:
            state = self.init_state(x)
        newest = None
        if state.h is not None:  # preprocess H(t-1) once, with all P(i) at the same time
            newest = same_conv2d(state.h, self.prep_weight, None, self.padding_mode, self.backend)
        history = ([newest] + list(state.history))[: self.steps]
        gates = self.tensor_train(x, self.preprocessed(history, x))
        h, c = _lstm_update(gates, state.c)
        return h, TTState(h=h, c=c, history=history)
