"""The DAVIS interactive benchmark over a session: the protocol, reports, the curve and its summary."""
