"""Interactive sessions and the DAVIS scribble robot."""
