"""CLI commands, one module each; see kn_core.cli."""
