"""DAVIS folders, scribbles and training data."""
