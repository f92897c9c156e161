"""Users: creation with the client token; reading and deleting oneself with a user token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yarl import URL

from .. import _params as p
from .._options import RequestOptions
from .._transport import Response, as_nothing
from ..errors import ArgumentError, DecodeError
from ..models import User
from ._base import Resource

if TYPE_CHECKING:
    from .._client import UserClient

_PASSWORD_MAX = 72


def _check_email(email: object) -> str:
    if not isinstance(email, str) or email.count("@") != 1 or any(c.isspace() for c in email):
        raise ArgumentError("email", "must be an e-mail address such as jane@example.com")
    local, domain = email.split("@")
    if not local or "." not in domain.strip(".") or len(email) > 254:
        raise ArgumentError("email", "must be an e-mail address such as jane@example.com")
    return email


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise ArgumentError("password", "must be a non-empty str")
    if len(password) > _PASSWORD_MAX:
        raise ArgumentError("password", f"must be at most {_PASSWORD_MAX} characters")
    return password


def _created_user_id(response: Response) -> str:
    """The id at the end of the 201's ``Location``: the reference's ``/v2.1/users/{id}``
    or any other path ending in ``users/{id}``, resolved against the request's URL, on
    the API's own scheme, host and port (a link elsewhere is not our user)."""
    location = response.headers.get("Location", "")
    try:
        target = response.url.join(URL(location))
        same_origin = target.origin() == response.url.origin()
        segments = target.path.rstrip("/").split("/")
    except (ValueError, TypeError):
        same_origin, segments = False, []
    user_id = segments[-1] if len(segments) >= 2 and segments[-2] == "users" else ""
    if not (same_origin and user_id.isascii() and user_id.isdigit()):
        raise DecodeError("POST /users: expected a Location on the API's host ending in "
                          "users/{id} (ASCII digits)", status=response.status,
                          request_id=response.request_id, body=location[:200])
    return user_id


class ClientUsers(Resource):
    """``client.users``: operations that take the client token."""

    async def create(self, email: str, password: str) -> str:
        """Create a user and return its id. Raises `ConflictError` if the e-mail exists.

        Not retried once it may have reached the server: a replay could answer 409.
        """
        body = {"email": _check_email(email), "password": _check_password(password)}
        return await self._requester.request(_created_user_id, RequestOptions(
            method="POST", url=self._api("users"), json=body, idempotent=False,
            expect=frozenset({201})))


class Users(Resource):
    """``user_client.users``: the user the token belongs to."""

    _requester: UserClient

    async def me(self) -> User:
        user = await self._get(User, "users", "me")
        self._requester.user_id = user.id
        return user

    async def get(self, user_id: str) -> User:
        """A user can read only itself; any other id gives `PermissionDeniedError`."""
        return await self._get(User, "users", p.ident("user_id", user_id))

    async def delete(self, user_id: str | None = None) -> None:
        """Delete the user (by default, this one) with all its data; forget its tokens."""
        if user_id is None:
            user_id = self._requester.user_id or (await self.me()).id
        await self._requester.request(as_nothing, RequestOptions(
            method="DELETE", url=self._api("users", p.ident("user_id", user_id))))
        self._requester.forget()
