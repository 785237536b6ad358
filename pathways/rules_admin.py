"""Admin for rule sets (the tuning workflow builds on this)."""
