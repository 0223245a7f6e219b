"""Host-level jobs: bootstrap, install, cleanup, export, monitor."""
