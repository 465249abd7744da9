"""Zigbee2MQTT's request/response API: ``bridge/request/<x>`` → ``bridge/response/<x>``.

Every request carries a ``transaction`` id that Zigbee2MQTT echoes in its response. Each
pending request is tracked until it is answered, times out or the adapter stops, and is
removed in every one of those cases.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+){0,3}$")


class BridgeRequestError(Exception):
    """A bridge request failed: Zigbee2MQTT said so, it did not answer, or the adapter stopped."""


@dataclass(slots=True)
class _Pending:
    name: str
    future: asyncio.Future[Any]


class BridgeRequests:
    """Sends bridge requests with transaction ids and matches their responses."""

    def __init__(self, base_topic: str, publish: Callable[[str, bytes], None]) -> None:
        self._base = base_topic
        self._publish = publish
        # A per-run prefix: responses to other clients' requests (or to an earlier run's) never
        # match one of ours.
        self._prefix = f"hub-{secrets.token_hex(4)}"
        self._counter = itertools.count(1)
        self.pending: dict[str, _Pending] = {}
        self.timed_out = 0
        self.unmatched = 0

    async def request(self, name: str, payload: Mapping[str, Any] | None, *, timeout: float) -> Any:
        """Send ``bridge/request/<name>`` and return the response's ``data``.

        Raises BridgeRequestError when Zigbee2MQTT answers with an error, when no answer
        comes within ``timeout`` seconds, or when the adapter stops first.
        """
        if not _NAME.match(name):
            raise BridgeRequestError(f"invalid bridge request name {name!r}")
        transaction = f"{self._prefix}-{next(self._counter)}"
        body = dict(payload or {})
        body["transaction"] = transaction
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[transaction] = _Pending(name, future)
        try:
            self._publish(f"{self._base}/bridge/request/{name}", orjson.dumps(body))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self.timed_out += 1
            raise BridgeRequestError(
                f"Zigbee2MQTT did not answer bridge/request/{name} within {timeout:g} s"
            ) from None
        finally:
            self.pending.pop(transaction, None)

    def on_response(self, name: str, response: Mapping[str, Any]) -> bool:
        """Settle the request this response answers; return False if it answers none of ours."""
        transaction = response.get("transaction")
        pending = self.pending.get(transaction) if isinstance(transaction, str) else None
        if pending is None or pending.name != name:
            self.unmatched += 1  # another client's request, or one of ours that timed out
            return False
        del self.pending[transaction]  # type: ignore[arg-type]
        if pending.future.done():
            return True
        if response.get("status") == "ok":
            pending.future.set_result(response.get("data"))
        else:
            error = response.get("error")
            reason = error if isinstance(error, str) and error else "no reason given"
            pending.future.set_exception(
                BridgeRequestError(f"Zigbee2MQTT refused bridge/request/{name}: {reason[:300]}")
            )
        return True

    def cancel_all(self, reason: str) -> None:
        """Fail every pending request (the adapter is stopping)."""
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(BridgeRequestError(reason))
        self.pending.clear()
