"""Pretrained weights: locating, verifying, adapting, saving and publishing them."""
