"""The stand-in as `hub demo` uses it: the hub configured by demo_settings(), no proxy."""

from __future__ import annotations

import json
from pathlib import Path

from conversation.script import PEOPLE_YAML
from hubtest import HubFactory, eventually, write_config
from smstest import PHONES, running_plugin

from frontends.sms.standin import TwilioStandin, demo_settings
from hub.broker import free_port


async def test_a_hub_with_the_demo_settings_answers_texts_and_sends_alerts(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    port = free_port()
    async with TwilioStandin() as standin:
        settings = demo_settings(standin, listen=f"127.0.0.1:{port}")
        lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in settings.items())
        hub = await hub_factory(
            write_config(tmp_path, mqtt_url, f"{PEOPLE_YAML}frontends:\n  sms:\n{lines}")
        )
        plugin = await running_plugin(hub)
        assert plugin.port == port
        answer = await standin.text_hub(
            f"{settings['public_url']}/sms/inbound", PHONES["alice"], "help"
        )
        assert answer.status == 200
        assert answer.message
        assert hub.notifier is not None
        hub.notifier.notify("Washing machine done", targets=["bob"])
        await eventually(lambda: standin.sent, 5, "no alert sent")
        assert standin.sent[0].to == PHONES["bob"]
        await standin.settled()
        assert [c.http_status for c in standin.callbacks] == [204, 204]
