"""Models: the encoder classifier, the scoring engine, its training and distillation, the baselines, ablation cells."""
