"""The package version, in a module of its own so every layer (client, CLI,
local server) can import it without importing the package front door."""

__version__ = "0.1.0"
