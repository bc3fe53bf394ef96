"""Conv-TT-LSTM family (dissertation chapter 4). Import submodules explicitly; this file stays light."""

__version__ = "0.1.0"
