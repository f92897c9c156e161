"""oxlin-async: an asyncio SDK for the Oxlin (formerly Linxo Connect) Accounts API v2.1."""

from .environments import Environment

__version__ = "0.1.0"

__all__ = ["Environment", "__version__"]
