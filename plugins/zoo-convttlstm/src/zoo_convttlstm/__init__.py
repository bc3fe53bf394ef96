"""zoo-convttlstm: Conv-TT-LSTM and ConvLSTM video models (dissertation chapter 4) for the spectral zoo.

Light on import: the public names (the layer and network classes, their builders) load on first access.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "ConvLSTMCell": ".cells",
    "ConvTTLSTMCell": ".cells",
    "VideoPredictionNet": ".network",
    "EarlyActivityRecognizer": ".recognition",
    "ScheduledSampling": ".training",
    "convert_official_state_dict": ".official",
    "official_architecture": ".official",
    "OfficialCheckpointError": ".official",
}

__all__ = sorted(_LAZY) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
