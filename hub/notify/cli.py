"""``hub notifications``: the recent deliveries and what became of them."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any, add_config: Any, add_json: Any) -> None:
    """Add ``hub notifications`` to the CLI."""
    parser = sub.add_parser(
        "notifications",
        help="list recent notification deliveries",
        description="List the newest notification deliveries with their outcome: sent, "
        "failed (and why), duplicate, rate_limited, held for quiet hours, digested, "
        "undeliverable, or a later status from the service.",
    )
    add_config(parser)
    add_json(parser)
    parser.add_argument("--limit", type=int, default=30, help="how many (default 30)")
    parser.add_argument("--status", help="only deliveries with this status")


def cmd_notifications(args: argparse.Namespace) -> int:
    """``hub notifications``."""
    from hub.cli import load_or_report
    from hub.storage import Storage, StorageError
    from hub.storage.notifications import DELIVERY_STATUSES, DeliveryRecord, DeliveryStore

    if args.limit < 1:
        print("hub notifications: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.status is not None and args.status not in DELIVERY_STATUSES:
        known = ", ".join(sorted(DELIVERY_STATUSES))
        print(f"hub notifications: unknown status {args.status!r}; use {known}", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED

    async def fetch() -> list[DeliveryRecord]:
        storage = Storage(loaded.config.database.resolved_url)
        await storage.start()
        try:
            return await DeliveryStore(storage).recent(limit=args.limit, status=args.status)
        finally:
            await storage.close()

    try:
        rows = asyncio.run(fetch())
    except StorageError as exc:
        print(f"hub notifications: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2, default=str))
        return EXIT_OK
    if not rows:
        print("no notifications yet")
        return EXIT_OK
    for row in rows:
        when = dt.datetime.fromtimestamp(row.created).strftime("%Y-%m-%d %H:%M:%S")
        who = row.person or "-"
        print(f"{when}  {row.status:<13} {row.channel}:{row.address}  ({who})  {row.title}")
        if row.detail and row.status not in ("sent", "sending"):
            print(f"{'':21}{row.detail}")
    return EXIT_OK
