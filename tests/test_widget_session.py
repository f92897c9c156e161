"""Widget sessions and callback URLs: `add_connection_url` and `parse_callback_url`
(docs/oxlin-api §12; no network)."""

from __future__ import annotations

from typing import Any

import pytest
import yarl
from _payloads import LINK, SESSION_ID

from oxlin_async.errors import (
    ArgumentError,
)
from oxlin_async.models import (
    AccountType,
    AddConnectionResult,
    WidgetSession,
    parse_callback_url,
)

# -- widget ----------------------------------------------------------------------------


def _session(link: str = LINK) -> WidgetSession:
    return WidgetSession(session_id=SESSION_ID, add_connection_link=link,
                         links={"add_connection": link})


def test_add_connection_url() -> None:
    url = _session().add_connection_url(
        redirect_uri="https://app.example/callback?state=a b&x=1#frag",
        locale="fr_FR",
        auto_sync=False,
        wait_sync_end=True,
        countries=["FR", "BE"],
        font_color="#ff0000",
        expected_account_type="PAYMENT",
        cancel_url=None,
    )
    assert url.startswith(LINK + "&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback%3F")
    assert "&auto_sync=false&" in url and "&wait_sync_end=true&" in url
    assert "font_color=%23ff0000" in url and "countries=FR%2CBE" in url
    assert "cancel_url" not in url and " " not in url
    query = yarl.URL(url).query
    assert query["session_id"] == SESSION_ID
    assert query["redirect_uri"] == "https://app.example/callback?state=a b&x=1#frag"
    assert query["locale"] == "fr_FR" and query["countries"] == "FR,BE"
    assert query["font_color"] == "#ff0000" and query["expected_account_type"] == "PAYMENT"
    assert list(query) == ["session_id", "redirect_uri", "locale", "auto_sync", "wait_sync_end",
                           "countries", "font_color", "expected_account_type"]


def test_add_connection_url_minimal() -> None:
    url = _session().add_connection_url(redirect_uri="http://localhost:8080/cb")
    assert url == LINK + "&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb"


@pytest.mark.parametrize(
    "redirect_uri",
    ["/callback", "callback", "ftp://app.example/cb", "javascript:alert(1)", "https://",
     "", "mailto:a@b.example", 42, None],
)
def test_add_connection_url_needs_an_absolute_http_redirect(redirect_uri: Any) -> None:
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri=redirect_uri)
    assert raised.value.argument == "redirect_uri" and "redirect_uri" in str(raised.value)


def test_add_connection_url_rejects_bad_parameters() -> None:
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri="https://a.example/", session_id="other")
    assert raised.value.argument == "session_id"
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri="https://a.example/", font={"a": 1})
    assert raised.value.argument == "font"


def test_add_connection_url_enum_values() -> None:
    url = _session().add_connection_url(redirect_uri="https://a.example/",
                                        expected_account_type=AccountType.CHECKINGS)
    assert url.endswith("&expected_account_type=CHECKINGS")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://app.example/cb?status=success&result=created&connection_id=4422323",
         AddConnectionResult(status="success", result="created", connection_id="4422323")),
        ("https://app.example/cb?state=xyz&status=success&result=created&connection_id=7",
         AddConnectionResult(status="success", result="created", connection_id="7")),
        ("https://app.example/cb?status=failure&error=auth_failed",
         AddConnectionResult(status="failure", error="auth_failed")),
        ("http://localhost/cb?status=failure&error=cancelled#x",
         AddConnectionResult(status="failure", error="cancelled")),
        ("https://app.example/cb?status=failure&error=server_error&connection_id=",
         AddConnectionResult(status="failure", error="server_error")),
    ],
)
def test_parse_callback_url(url: str, expected: AddConnectionResult) -> None:
    result = parse_callback_url(url)
    assert result == expected == AddConnectionResult.parse_callback_url(url)
    assert result.succeeded is (expected.status == "success")


@pytest.mark.parametrize("url", ["https://app.example/cb", "https://app.example/cb?status=",
                                 "https://app.example/cb?error=x", 42])
def test_parse_callback_url_needs_a_status(url: Any) -> None:
    with pytest.raises(ArgumentError) as raised:
        parse_callback_url(url)
    assert raised.value.argument == "url"
