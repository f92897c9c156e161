"""The vendor quickstart, end to end, in Python, against a local emulator.

Run: ``python examples/quickstart.py``. It starts the emulator in-process, then:
client token -> create a user -> user token -> widget session -> the user connects the
Linxo test bank in the widget -> wait for the connection -> accounts and transactions.
Against the real service, drop the sandbox and pass your credentials and
``environment=ox.Environment.SANDBOX``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox


async def main() -> None:
    async with OxlinSandbox() as sandbox, ox.OxlinClient(
            sandbox.client_id, sandbox.client_secret, environment=sandbox.environment) as client:
        # 1-2. The client token is obtained on first use; create the user with it.
        email, password = "jane.doe@example.com", "s3cret-Passw0rd"
        user_id = await client.users.create(email, password)
        print(f"created user {user_id}")

        # 3. A user scope: the password grant happens on its first request.
        jane = client.as_user(email, password)
        me = await jane.users.me()
        print(f"signed in as {me.email} (created {me.creation_date:%Y-%m-%d})")

        # 4-5. A widget session; the user opens the URL and picks the Linxo test bank.
        session = await jane.widget.create_session()
        url = session.add_connection_url(redirect_uri="https://app.example/callback",
                                         locale="en_GB")
        callback = await sandbox.complete_widget(url, testbank="en/sherlock_holmes")
        result = ox.parse_callback_url(callback)
        print(f"widget finished: {result.status}, connection {result.connection_id}")
        assert result.connection_id is not None

        # 6. Wait until the connection has synchronised.
        connection = await jane.connections.wait_until_settled(result.connection_id)
        print(f"connection {connection.id} to {connection.name}: {connection.status}")

        # 7. Accounts and transactions.
        async for account in jane.accounts.list(connection_id=connection.id):
            print(f"account {account.name} ({account.type}): {account.balance} "
                  f"{account.currency}")
            async for tx in account_transactions(jane, account.id):
                print(f"  {tx.day}  {tx.amount:>10}  {tx.label}")


def account_transactions(user: ox.UserClient, account_id: str) -> ox.AsyncPaginator[
        ox.Transaction]:
    """This year's transactions, newest first."""
    return user.transactions.list(account_id=account_id, sort="-date", max_items=10,
                                  start_date=dt.date(2026, 1, 1))


if __name__ == "__main__":
    asyncio.run(main())
