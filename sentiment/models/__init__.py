"""Models: the encoder classifier, its training, the baselines, ablation cells and search."""
