"""The DAVIS interactive benchmark: metrics and protocol."""
