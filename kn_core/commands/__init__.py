"""CLI commands, one module each (``options`` and ``outputs`` are helpers they share); see kn_core.cli."""
