"""Convert: swap faces through video and images (pipeline, blending, colour, smoothing)."""
