"""The video pipeline: orchestrate and its steps."""
