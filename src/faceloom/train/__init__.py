"""Training: the shared encoder, one decoder per person, and everything around the loop."""
