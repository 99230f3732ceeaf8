"""Signals + history + status -> Decision, driven by mappings/rules.toml. Pure: no I/O beyond loading."""
