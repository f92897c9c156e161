"""oxlin-async: an asyncio SDK for the Oxlin (formerly Linxo Connect) Accounts API v2.1.

    import oxlin_async as ox

    async with ox.OxlinClient(client_id, client_secret) as client:
        user = client.as_user(email, password)
        async for tx in user.transactions.list(start_date=datetime.date(2025, 1, 1)):
            ...
"""

from ._auth import Token
from ._client import DEFAULT_USER_SCOPES, OxlinClient, UserClient
from ._filters import TransactionFilter
from ._options import RequestStats
from ._pagination import AsyncPaginator
from ._retry import RetryPolicy
from ._version import __version__
from .bulk import Batch, BulkResult, BulkRun, BulkUser, Checkpoint, Progress, UserReport
from .environments import Environment
from .errors import (
    APIError,
    ArgumentError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DecodeError,
    InternalServerError,
    InvalidClientError,
    InvalidGrantError,
    NotFoundError,
    OAuthError,
    OxlinError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    ServiceUnavailableError,
    SettleTimeoutError,
    TokenRenewalError,
    TransportError,
    UnexpectedStatusError,
)
from .models import (
    Account,
    AccountStatus,
    AccountType,
    AccountUsage,
    AddConnectionResult,
    Address,
    Category,
    CategoryParent,
    Channel,
    ChannelMode,
    ChannelStatus,
    Connection,
    ConnectionStatus,
    Owner,
    Transaction,
    TransactionOrigin,
    TransactionSource,
    TransactionStatus,
    TransactionType,
    User,
    WidgetSession,
    parse_callback_url,
)

__all__ = [
    "DEFAULT_USER_SCOPES",
    "APIError",
    "Account",
    "AccountStatus",
    "AccountType",
    "AccountUsage",
    "AddConnectionResult",
    "Address",
    "ArgumentError",
    "AsyncPaginator",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BulkResult",
    "BulkRun",
    "BulkUser",
    "Category",
    "CategoryParent",
    "Channel",
    "ChannelMode",
    "ChannelStatus",
    "Checkpoint",
    "ConflictError",
    "Connection",
    "ConnectionStatus",
    "DecodeError",
    "Environment",
    "InternalServerError",
    "InvalidClientError",
    "InvalidGrantError",
    "NotFoundError",
    "OAuthError",
    "Owner",
    "OxlinClient",
    "OxlinError",
    "PaginationError",
    "PermissionDeniedError",
    "Progress",
    "RateLimitError",
    "RequestStats",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "SettleTimeoutError",
    "Token",
    "TokenRenewalError",
    "Transaction",
    "TransactionFilter",
    "TransactionOrigin",
    "TransactionSource",
    "TransactionStatus",
    "TransactionType",
    "TransportError",
    "UnexpectedStatusError",
    "User",
    "UserClient",
    "UserReport",
    "WidgetSession",
    "__version__",
    "parse_callback_url",
]
