"""The package version, in one place: hatch reads it at build time, the SDK at run time."""

__version__ = "0.1.0"
