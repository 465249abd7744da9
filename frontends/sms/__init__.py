"""SMS front-end (Twilio): people text the hub, and alerts reach them by SMS.

Enable it in ``hub.yaml`` (see README.md in this folder for connecting a real number)::

    frontends:
      sms:
        account_sid: !secret twilio_account_sid
        auth_token: !secret twilio_auth_token
        number: "+15557654321"                 # your Twilio number
        public_url: https://hub.example.com    # Twilio calls <public_url>/sms/inbound
        listen: 127.0.0.1:8124                 # behind your TLS reverse proxy

:mod:`frontends.sms.standin` is a local stand-in for Twilio (tests, ``hub demo``).
"""

from frontends.sms.plugin import SmsError, SmsFrontend, StatusReport
from frontends.sms.settings import Settings

__all__ = ["Settings", "SmsError", "SmsFrontend", "StatusReport"]
