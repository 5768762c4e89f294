"""Files and formats: safe writing, frames and videos, masks, DAVIS folders and scribbles, weights, exports."""
import os

# OpenCV's FFmpeg backend prints libav's own lines ("moov atom not found") on stderr before our one-line error
# says what is wrong. It reads this when it first opens a video, so it is set before any module here does; a
# value the user set (to debug a codec) is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
