"""Providers for the service-backed rules (reference 6.1), each over a maintained library.

`resolver` is the gateway's one DNS resolver; `auth` checks SPF, DKIM, DMARC and ARC once per
message; `dnslist` answers block-list and reputation zones; `dkimsign` signs outgoing mail.
They plug into `runtime.engine.services.Services`, which the rules ask (`need(...)`).
"""
