"""Image work before the model: pure numpy/OpenCV functions, no torch."""
