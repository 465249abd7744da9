"""``hub ask "TEXT" --as PERSON``: talk to the running hub's command layer over MQTT.

The request goes to ``<base>/conversation/request`` with a transaction id; the hub answers on
``<base>/conversation/response/<id>``. Exit 0 when the reply is DONE or ANSWER, 1 otherwise
(refused, failed, not understood, no hub), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
import uuid
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any, add_config: Any, add_json: Any) -> None:
    """Add ``hub ask`` to the CLI's sub-parsers."""
    ask = sub.add_parser(
        "ask",
        help="send a request in plain words to the running hub",
        description="Send a request in plain words to the running hub's command layer as a "
        "person from hub.yaml's people, and print the reply. Exit 0 if it was done or "
        "answered, 1 otherwise.",
    )
    ask.add_argument("text", help='what to ask, e.g. "turn on the kitchen light"')
    ask.add_argument(
        "--as", dest="person", required=True, metavar="PERSON", help="a person id from people:"
    )
    ask.add_argument("--language", help="reply in this language (default: the person's)")
    ask.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the reply (default 15)"
    )
    add_config(ask)
    add_json(ask)


def cmd_ask(args: argparse.Namespace) -> int:
    """Run ``hub ask``."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from hub.cli import load_or_report
    from hub.conversation.reply import reply_from_dict
    from hub.mqtt import BrokerAddress
    from hub.rules.cli import runtime_file

    if not 0 < args.timeout <= 300:
        print("hub ask: --timeout must be between 0 and 300 seconds", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED
    if args.person not in {p.id for p in loaded.config.people}:
        known = ", ".join(p.id for p in loaded.config.people) or "nobody is configured"
        print(f"hub ask: no person {args.person!r} in people: ({known})", file=sys.stderr)
        return EXIT_USAGE
    url = loaded.config.mqtt.url
    if url is None:
        try:
            url = json.loads(runtime_file(loaded).read_text())["broker"]
        except (OSError, ValueError, KeyError):
            print(
                f"hub ask: no running hub found (no mqtt.url and no {runtime_file(loaded)})",
                file=sys.stderr,
            )
            return EXIT_FAILED
    address = BrokerAddress.parse(url)
    base = loaded.config.hub.base_topic
    tx = uuid.uuid4().hex
    response_topic = f"{base}/conversation/response/{tx}"
    answers: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        answers.put(message.payload)

    def on_subscribe(*_: Any) -> None:
        subscribed.put(True)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hub-ask-{tx[:12]}")
    if address.username:
        client.username_pw_set(address.username, address.password)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    request = {
        "id": tx,
        "as": args.person,
        "text": args.text,
        "frontend": "cli",
        "language": args.language,
    }
    deadline = time.monotonic() + args.timeout
    try:
        client.connect(address.host, address.port, 10)
        client.loop_start()
        client.subscribe(response_topic, qos=1)
        subscribed.get(timeout=max(0.1, deadline - time.monotonic()))
        client.publish(f"{base}/conversation/request", json.dumps(request), qos=1)
        payload = answers.get(timeout=max(0.1, deadline - time.monotonic()))
    except OSError as exc:
        where = address.display()
        print(f"hub ask: cannot reach the hub's broker at {where}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except queue.Empty:
        print(f"hub ask: no reply from the hub within {args.timeout:g} s", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.disconnect()
        client.loop_stop()
    try:
        body = json.loads(payload)
        reply = reply_from_dict(body)
    except ValueError as exc:
        print(f"hub ask: the hub sent a malformed reply: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(reply.plain())
        for action in reply.actions:
            print(f"  > {action.label}: hub ask {json.dumps(action.command)} --as {args.person}")
    return EXIT_OK if reply.ok else EXIT_FAILED
