"""Host-level jobs: bootstrap and the demo."""
