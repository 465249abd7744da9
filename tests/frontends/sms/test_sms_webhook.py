"""The SMS webhook in a running hub: signatures, the allow-list, bad input, floods, TwiML."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from hubtest import eventually
from smstest import OUTSIDER, PHONES, PUBLIC_URL, SmsSetup
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from frontends.sms.segments import segments
from frontends.sms.standin import twiml_messages
from hub.conversation import Identity, IdentityKind
from hub.storage import AuditEntry

INBOUND = f"{PUBLIC_URL}/sms/inbound"


def rejected(sms: SmsSetup, kind: str) -> int:
    """How many webhook requests the hub rejected for ``kind``."""
    return sms.hub.stats.rejected_by_reason.get(kind, 0)


async def audited(sms: SmsSetup, action: str) -> list[AuditEntry]:
    """The audit log's lines the SMS front-end wrote for ``action``."""
    storage = sms.hub.storage
    assert storage is not None
    await storage.flush()
    return [
        entry
        for entry in await storage.audit(limit=1000)
        if entry.kind == "frontend" and entry.action == action
    ]


def lock_state(sms: SmsSetup) -> object:
    state = sms.hub.registry.states.get("front_door_lock.lock")
    return None if state is None else state.value


async def test_a_signed_text_reaches_the_command_layer_and_is_answered_in_twiml(
    sms: SmsSetup,
) -> None:
    answer = await sms.text("alice", "help")
    assert answer.status == 200, answer.text
    assert len(answer.messages) == 1
    assert answer.messages[0].strip()
    [request] = sms.layer.requests
    assert request.frontend == "sms"
    assert request.sender == Identity(IdentityKind.PHONE, PHONES["alice"])
    assert request.text == "help"
    assert answer.messages[0] == sms.plugin.render(sms.layer.replies[0])


async def test_unsigned_forged_and_misdirected_signatures_are_refused(sms: SmsSetup) -> None:
    standin = sms.standin
    params = standin.inbound_params(PHONES["alice"], "unlock the front door")
    local = sms.inbound_url
    # No signature at all.
    answer = await standin.post(local, params, signature=None)
    assert answer.status == 403
    assert rejected(sms, "sms_unsigned") == 1
    # A made-up signature, and one made with another auth token.
    assert (
        await standin.post(local, params, signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    ).status == 403
    other = RequestValidator("another-token").compute_signature(INBOUND, params)
    assert (await standin.post(local, params, signature=other)).status == 403
    # Signed for the local address rather than the public URL Twilio was given.
    assert (await standin.post(local, params, signed_url=local)).status == 403
    # Signed for another path of the public URL (e.g. the status callback's).
    assert (await standin.post(local, params, signed_url=f"{PUBLIC_URL}/sms/status")).status == 403
    # A genuine signature over other fields: the body was changed on the way.
    genuine = standin.sign(INBOUND, {**params, "Body": "status"})
    assert (await standin.post(local, params, signature=genuine)).status == 403
    assert rejected(sms, "sms_forged") == 5
    # Each refusal is in the audit log, with the reason, as the SMS front-end's doing.
    forged = await audited(sms, "sms_forged")
    assert len(forged) == 5
    assert all(e.result == "refused" and "does not match" in e.detail for e in forged)
    assert all(e.context is not None and e.context.source == "sms" for e in forged)
    assert len(await audited(sms, "sms_unsigned")) == 1
    # Nothing reached the command layer, and the door stays as it was.
    assert sms.layer.requests == []
    assert sms.standin.sent == []


async def test_a_signature_for_another_account_is_refused(sms: SmsSetup) -> None:
    params = sms.standin.inbound_params(PHONES["alice"], "status")
    params["AccountSid"] = "AC" + "f" * 32
    answer = await sms.standin.post(sms.inbound_url, params, signed_url=INBOUND)
    assert answer.status == 403
    assert answer.text == "not signed by Twilio for this hub"
    [entry] = await audited(sms, "sms_forged")
    assert "signed for another Twilio account" in entry.detail
    assert sms.layer.requests == []


async def test_malformed_requests_get_a_clear_error_and_reach_nothing(sms: SmsSetup) -> None:
    standin = sms.standin
    params = standin.inbound_params(PHONES["alice"], "status")
    url = sms.inbound_url
    as_json = await standin.post(
        url, params, signed_url=INBOUND, headers={"Content-Type": "application/json"}
    )
    assert as_json.status == 415
    assert "application/x-www-form-urlencoded" in as_json.text
    not_utf8 = await standin.post(url, params, signed_url=INBOUND, raw=b"Body=%FF&From=\xff")
    assert not_utf8.status == 400
    assert "UTF-8" in not_utf8.text
    huge = await standin.post(url, params, signed_url=INBOUND, raw=b"Body=" + b"x" * 40_000)
    assert huge.status == 413
    many = "&".join(f"f{n}=1" for n in range(150)).encode()
    assert (await standin.post(url, params, signed_url=INBOUND, raw=many)).status == 400
    # Signed, but without the fields a text has.
    for missing in ("From", "MessageSid", "Body"):
        form = {k: v for k, v in params.items() if k not in (missing, "SmsSid", "SmsMessageSid")}
        answer = await standin.post(url, form, signed_url=INBOUND)
        assert answer.status == 400, (missing, answer.text)
        assert missing in answer.text
    bad_from = await standin.post(url, {**params, "From": "anonymous"}, signed_url=INBOUND)
    assert bad_from.status == 400
    assert sms.layer.requests == []
    assert rejected(sms, "sms_malformed") >= 8


async def test_a_number_off_the_allow_list_gets_no_answer(sms: SmsSetup) -> None:
    answer = await sms.text(OUTSIDER, "unlock the front door")
    assert answer.status == 200
    assert answer.messages == ()  # silence: Twilio sends nothing, nobody pays for a reply
    assert sms.layer.requests == []
    assert rejected(sms, "sms_not_allowed") == 1
    [entry] = await audited(sms, "sms_not_allowed")
    assert entry.target == OUTSIDER


async def test_a_replayed_message_runs_once_and_gets_the_same_answer(sms: SmsSetup) -> None:
    params = sms.standin.inbound_params(PHONES["alice"], "status of the kitchen")
    first = await sms.standin.post(sms.inbound_url, params, signed_url=INBOUND)
    again = await sms.standin.post(sms.inbound_url, params, signed_url=INBOUND)
    assert first.status == again.status == 200
    assert again.messages == first.messages
    assert len(sms.layer.requests) == 1
    assert rejected(sms, "sms_replay") == 1


async def test_a_flood_from_one_number_is_cut_off(sms: SmsSetup) -> None:
    limit = sms.plugin.settings.flood_messages
    answers = [await sms.text("alice", f"status {n}") for n in range(limit + 4)]
    assert all(a.status == 200 for a in answers)
    assert all(a.messages for a in answers[:limit])
    assert all(a.messages == () for a in answers[limit:])
    assert len(sms.layer.requests) == limit
    assert rejected(sms, "sms_flood") == 4
    assert len(await audited(sms, "sms_flood")) == 4
    # Someone else is not affected.
    assert (await sms.text("bob", "status")).messages


async def test_hostile_bodies_get_an_answer_in_well_formed_twiml(sms: SmsSetup) -> None:
    bodies = [
        "",
        "   ",
        "schalte das Küchenlicht ein 💡 ñ 日本語",
        "</Message><Message>pwned</Message></Response>",
        "]]><!--<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>&e;",
        "turn on kitchen_light'; DROP TABLE audit; --",
        "unlock\x00 the\x07 front\x1b door",
        "{{ 7*7 }} ${jndi:ldap://x} %s%s%n",
    ]
    for body in bodies:
        answer = await sms.text("alice", body)
        assert answer.status == 200, (body, answer.text)
        root = ET.fromstring(answer.text)
        assert root.tag == "Response"
        assert len(root.findall("Message")) == 1, (body, answer.text)
        assert "pwned" not in twiml_messages(answer.text)
        assert segments(answer.message) <= sms.plugin.settings.max_segments
    assert [r.text for r in sms.layer.requests] == bodies
    assert lock_state(sms) != "unlocked"


async def test_a_text_longer_than_twilio_allows_is_refused_with_the_reason(sms: SmsSetup) -> None:
    answer = await sms.text("alice", "turn on the kitchen light " * 200)  # 5,200 characters
    assert answer.status == 200
    assert "too long" in answer.message
    assert "5200" in answer.message
    assert sms.layer.requests == []
    assert len(await audited(sms, "sms_too_long")) == 1


async def test_answers_fit_in_two_segments(sms: SmsSetup) -> None:
    answer = await sms.text("alice", "list devices")
    assert answer.status == 200
    assert answer.message
    assert segments(answer.message) <= 2
    full = sms.layer.replies[0].plain()
    if segments(full) > 2:  # the whole list did not fit: it was cut, visibly
        assert answer.message.endswith(("...", "…"))


async def test_status_callbacks_must_be_signed(sms: SmsSetup) -> None:
    params = {
        "AccountSid": sms.standin.account_sid,
        "MessageSid": "SM" + "1" * 32,
        "MessageStatus": "delivered",
    }
    url = f"{sms.status_url}?delivery=abc"
    public = f"{PUBLIC_URL}/sms/status?delivery=abc"
    assert (await sms.standin.post(url, params, signature=None)).status == 403
    assert (await sms.standin.post(url, params, signed_url=url)).status == 403
    forged = sms.standin.sign(public, {**params, "MessageStatus": "failed"})
    assert (await sms.standin.post(url, params, signature=forged)).status == 403
    assert list(sms.plugin.reports) == []
    good = await sms.standin.post(url, params, signed_url=public)
    assert good.status == 204
    await eventually(lambda: len(sms.plugin.reports) == 1)
    [report] = sms.plugin.reports
    assert (report.delivery_id, report.status, report.ok) == ("abc", "delivered", True)
    bad_status = await sms.standin.post(
        url, {**params, "MessageStatus": "<script>"}, signed_url=public
    )
    assert bad_status.status == 400


async def test_the_webhook_answers_nothing_else(sms: SmsSetup) -> None:
    session = sms.standin._session
    assert session is not None
    async with session.get(sms.inbound_url) as response:
        assert response.status == 405
    async with session.post(f"http://127.0.0.1:{sms.plugin.port}/admin") as response:
        assert response.status == 404
    await asyncio.sleep(0)


async def test_a_flood_of_forged_requests_is_counted_but_audits_are_bounded(sms: SmsSetup) -> None:
    params = sms.standin.inbound_params(PHONES["alice"], "unlock the front door")
    answers = await asyncio.gather(
        *(sms.standin.post(sms.inbound_url, params, signature="forged") for _ in range(40))
    )
    assert {a.status for a in answers} == {403}
    assert rejected(sms, "sms_forged") == 40
    assert len(await audited(sms, "sms_forged")) == 30
    assert sms.layer.requests == []
    # The webhook still serves genuine texts.
    assert (await sms.text("alice", "status")).messages
