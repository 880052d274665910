"""avvos: audio-visual video object segmentation that runs live."""

# OpenCV is loaded before PyAV on purpose. Both wheels bundle xcb libraries under the same hashed file names;
# when PyAV's copies are loaded first, OpenCV's Qt window code mixes them with a second libxcb and
# cv2.namedWindow hangs (found with `avvos live` on X11; tests/test_live_window.py checks the order holds).
import cv2  # noqa: F401
