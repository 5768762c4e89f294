"""Files and formats: safe writing, frames and videos, masks, DAVIS folders and scribbles, weights, exports."""
