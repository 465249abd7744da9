"""The command layer under every front-end: people, requests, replies.

A front-end turns what a person typed or pressed into a :class:`Request`, hands it to
:class:`CommandLayer.handle`, and renders the :class:`Reply` it gets back in its own form (a
Discord embed with buttons, a short SMS, an e-mail). Parsing, permissions, translation and
auditing happen here, once, so the same sentence does the same thing from every front-end.
"""

from hub.conversation.layer import CommandLayer, Completion, Request
from hub.conversation.people import Identity, IdentityKind, People, Person, Role
from hub.conversation.reply import Reply, ReplyAction, ReplyField, ReplyStatus

__all__ = [
    "CommandLayer",
    "Completion",
    "Identity",
    "IdentityKind",
    "People",
    "Person",
    "Reply",
    "ReplyAction",
    "ReplyField",
    "ReplyStatus",
    "Request",
    "Role",
]
