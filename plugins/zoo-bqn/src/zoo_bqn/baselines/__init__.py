"""Baselines of section 5.4: E-QNN (bootstrap ensemble of STE-trained QNNs) and a Gaussian BNN (SGVB + LRT)."""
