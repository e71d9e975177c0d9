"""mnist-platform."""
