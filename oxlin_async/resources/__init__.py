"""One module per resource of the API."""

from .accounts import Accounts
from .categories import Categories
from .connections import Connections
from .transactions import Transactions
from .users import ClientUsers, Users
from .widget import Widget

__all__ = ["Accounts", "Categories", "ClientUsers", "Connections", "Transactions", "Users",
           "Widget"]
