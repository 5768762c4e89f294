"""The interactive session: an interaction on a frame in, masks for every frame out, round by round."""
