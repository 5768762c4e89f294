"""Training data: datasets, augmentation, simulated interactions, the batch pipeline, synthetic videos."""
