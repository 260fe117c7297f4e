"""Client library and CLI for the course file protocol."""
