"""Interactions: scribbles and clicks rasterised to A-Net's maps, the simulated DAVIS user, the J/F it scores with."""
