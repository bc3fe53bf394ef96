"""zoo: a plugin-based PyTorch model zoo for spectral and tensorial networks."""
