"""The scripted conversation every front-end must handle alike (issue 5).

Each front-end's suite runs :func:`run_script` with its own ``say`` (send one message as a
person through that front-end, return the reply text it rendered) against a hub that has
:data:`PEOPLE_YAML` in its config and the simulated home's devices. The same effects and the
same refusals must follow whichever way the words arrive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hubtest import eventually

from hub.core import Hub

# People of the scripted household. Addresses are the ones each front-end's stand-in uses.
PEOPLE_YAML = """\
people:
  - id: alice
    name: Alice
    role: admin
    discord: "100000000000000001"
    phones: ["+15550000001"]
    emails: [alice@example.com]
  - id: bob
    name: Bob
    role: guest
    discord: "100000000000000002"
    phones: ["+15550000002"]
    emails: [bob@example.com]
    areas: [living_room]
"""

#: Who sends, by person id; "stranger" is someone the hub does not know.
SENDERS = ("alice", "bob", "stranger")

Say = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class Step:
    """One message and what must follow from it."""

    sender: str
    text: str
    reply_has: tuple[str, ...]  # words the rendered reply must contain (case-insensitive)
    state: tuple[str, object] | None = None  # an entity state that must hold afterwards


SCRIPT = (
    Step("alice", "turn on the kitchen light", ("kitchen light",), ("kitchen_light.light", "on")),
    Step("alice", "scene movie", ("movie",), ("living_room_tv_plug.switch", "on")),
    Step("alice", "status of the kitchen", ("kitchen light", "on")),
    Step("alice", "why is the kitchen light on", ("alice",)),
    Step("bob", "unlock the front door", ("not allowed",), ("front_door_lock.lock", "locked")),
    Step(
        "stranger", "turn off the kitchen light", ("don't know you",), ("kitchen_light.light", "on")
    ),
)


async def run_script(say: Say, hub: Hub, timeout: float = 8.0) -> list[str]:
    """Play :data:`SCRIPT` through ``say``; assert every reply and effect; return the replies."""

    def state_of(entity_id: str) -> object:
        state = hub.registry.states.get(entity_id)
        return state.value if state else None

    # The lock must start locked for the guest's attempt to mean anything.
    await eventually(lambda: state_of("front_door_lock.lock") == "locked", timeout)
    replies = []
    for step in SCRIPT:
        reply = await say(step.sender, step.text)
        replies.append(reply)
        for word in step.reply_has:
            assert word.lower() in reply.lower(), f"{step.text!r}: {word!r} not in {reply!r}"
        if step.state is not None:
            entity_id, value = step.state
            await eventually(
                lambda e=entity_id, v=value: state_of(e) == v,  # type: ignore[misc]
                timeout,
                f"{step.text!r}: {entity_id} is {state_of(entity_id)!r}, expected {value!r}",
            )
    return replies
