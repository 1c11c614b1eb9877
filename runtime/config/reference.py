"""The `gateway.toml` schema as data: every key with its type, default, meaning and an example.

`docs/gateway-toml.md` is generated from it (``python -m runtime.config.reference --write``,
or ``make docs``), and tests/gateway/test_config_reference.py checks both ways that it is the
schema the loader (runtime/config/config.py) reads: every key the loader reads is here, every
key here is read, the examples load, and the literal defaults are the loader's defaults.

One spelling per concept: ``[policies.NAME]`` are *mail flow policies* (what a connecting host
may do), ``[incoming_policies.NAME]`` / ``[outgoing_policies.NAME]`` are *mail policies* (which
content filters apply to which recipients), ``[text_resources]`` are *text resources*.
"""

from __future__ import annotations

import sys
from pathlib import Path

from attrs import frozen

#: Where the generated page lives, relative to the repository.
PAGE = Path("docs") / "gateway-toml.md"


@frozen
class Key:
    name: str
    type: str
    default: str  # a TOML literal where there is one ("2525", '"bypass"'), else prose
    doc: str
    example: str  # a TOML literal


@frozen
class Section:
    """``header`` as written in the file ("" for the top level); ``NAME`` stands for the
    administrator's own names."""

    header: str
    title: str
    doc: str
    keys: tuple[Key, ...]


NONE = "(none)"

SECTIONS: tuple[Section, ...] = (
    Section("", "Top level", "Keys before the first section.", (
        Key("message_filters", "list of paths", "[]",
            "Message filter files, run in this order on every message (relative to this file).",
            '["filters/header-stamping.filter"]'),
        Key("local_domains", "list of strings", "[]",
            "Recipient domains accepted under an ACCEPT mail flow policy (RELAY policies may "
            "mail anywhere).", '["example.org"]'),
        Key("default_policy", "string", '"default"',
            "The mail flow policy for hosts in no sender group.", '"default"'),
        Key("on_filter_error", '"bypass" or "tempfail"', '"bypass"',
            "A filter that fails at run time: bypass delivers without that stage's actions, "
            "tempfail keeps the message queued and runs the filters again later.", '"tempfail"'),
        Key("profiles_file", "path", NONE,
            "A TOML file of more [profiles.NAME] sections (what `filterlang profiles import` "
            "writes).", '"profiles.toml"'),
        Key("workers", "integer", "0",
            "Listener processes; 0: one per two cores.", "2"),
        Key("queue_workers", "integer", "0",
            "Queue (delivery) processes; 0: as many as listeners, one more when automatic.", "2"),
        Key("hostname", "string", "this host's FQDN",
            "The gateway's own name: the greeting and EHLO reply of every listener without a "
            "hostname of its own, Received lines, EHLO when delivering, MAILER-DAEMON@hostname "
            "and Reporting-MTA in DSNs, $Hostname in filters.", '"mx1.example.org"'),
        Key("postmaster", "string", "postmaster@HOSTNAME",
            "Who answers for the gateway: accepted as a recipient under any ACCEPT policy (RFC "
            "5321 4.5.1), named in DSNs, the sender of alert mail.",
            '"postmaster@example.org"'),
        Key("allow_unavailable", "list of strings", "[]",
            "Providers the filters may use although this file does not define them (ldap, "
            "spf, dkim, dmarc, reputation, url, image, language, forged): their rules are "
            "always false, and `lint --config` / `serve --check` warn instead of refusing.",
            '["reputation"]'),
        Key("client_ipv4_prefix_length", "integer (8 to 32)", "32",
            "Who is one client for the host access table's counts (connections, messages and "
            "recipients per hour, failed AUTH attempts): IPv4 addresses in one network of this "
            "prefix count together.", "32"),
        Key("client_ipv6_prefix_length", "integer (8 to 128)", "64",
            "The same for IPv6: one host is usually given a whole /64 and may take any "
            "address in it, so the default counts a /64 as one client.", "56"),
    )),
    Section("[storage]", "Storage", "Where the gateway keeps its state.", (
        Key("data_dir", "path", '"var"',
            "The spool, quarantines, tracking log and metrics live below this folder; it must "
            "be writable by the gateway's user.", '"/var/lib/filterlang"'),
        Key("keystore_url", "string", "sqlite:///DATA_DIR/keys.sqlite3",
            "The key store: sqlite:///PATH (relative to this file) or postgresql://... . Every "
            "`filterlang keys -c` command uses it.", '"postgresql://gw@db/keys"'),
        Key("spool_sync", '"filesystem" or "file"', '"filesystem"',
            "How a group commit is made durable: one syncfs of the spool's filesystem, or an "
            "fdatasync per message.", '"file"'),
        Key("min_free_space", "integer (bytes)", "104857600",
            "Below this much free space on the spool's filesystem, MAIL is answered 452 4.3.1.",
            "209715200"),
    )),
    Section("[[listeners]]", "Listeners",
            "One section per SMTP listener; at least one is required.", (
        Key("name", "string", "listenerN", "The name filters test with recv-listener.",
            '"Inbound"'),
        Key("address", "string", '"127.0.0.1"',
            'The address to listen on; "::" takes IPv6 and IPv4 clients both (an IPv4 client '
            "is named by its IPv4 address, in sender groups as everywhere).", '"0.0.0.0"'),
        Key("port", "integer", "2525", "The TCP port to listen on.", "25"),
        Key("hostname", "string", "the top-level hostname", "The name in the greeting.",
            '"mx1.example.org"'),
        Key("tls_cert", "path", NONE, "PEM certificate for STARTTLS (set tls_key too).",
            '"certs/mx.crt.pem"'),
        Key("tls_key", "path", NONE, "PEM private key of tls_cert.", '"certs/mx.key.pem"'),
        Key("require_tls", "boolean", "false",
            "530 5.7.0 to MAIL until the client has done STARTTLS (needs tls_cert and tls_key).",
            "true"),
        Key("tls_client_ca", "path", NONE,
            "CA certificates (a PEM file or a folder) for clients' certificates: STARTTLS asks "
            "for one, and one that verifies gives the session its subject (sender groups' "
            "tls_subjects, $TLSClientSubject); a client without one is served as before.",
            '"certs/partners/ca.pem"'),
        Key("max_line_length", "integer", "1000", "Longest SMTP line accepted (at least 80).",
            "2000"),
        Key("max_commands", "integer", "1000", "Commands per session.", "500"),
        Key("command_timeout", "number (seconds)", "300.0", "Time to wait for each command.",
            "120"),
        Key("session_timeout", "number (seconds)", "600.0",
            "Cap on the time to the first MAIL and on each transaction.", "300"),
        Key("max_connections", "integer", "1000",
            "Concurrent connections to this listener on the host, counted over every listener "
            "process; more are answered 421 4.7.0 naming the limit at connect.", "500"),
        Key("auth", 'list of "PLAIN" and "LOGIN"', "[]",
            "SMTP AUTH mechanisms offered to users submitting mail (RFC 4954), only after "
            "STARTTLS: not in the EHLO reply before it, and AUTH before it is answered 538 "
            "5.7.11 (needs tls_cert, tls_key and users_file). An authenticated session may "
            "relay where its policy's auth_relay allows, and filters see its user "
            "(smtp-auth-id-matches, $SMTPAuthID).", '["PLAIN", "LOGIN"]'),
        Key("users_file", "path", NONE,
            "Who may authenticate: one `name:argon2-hash` a line, edited with `filterlang "
            "users -f FILE add|remove|list`; changes apply at the next AUTH, no restart.",
            '"users.db"'),
        Key("auth_required", "boolean", "false",
            "530 5.7.0 to MAIL, RCPT and DATA until the client has authenticated (a "
            "submission port, as Postfix's smtpd_client_restrictions = "
            "permit_sasl_authenticated, reject).", "true"),
        Key("auth_max_failures", "integer", "5",
            "Failed AUTH attempts from one IP within auth_failure_window before it is answered "
            "421 4.7.0 and disconnected, at that attempt and every AUTH after it until the "
            "window has passed; counted over every listener process (a successful AUTH does "
            "not clear the count).",
            "3"),
        Key("auth_failure_window", "number (seconds)", "900.0",
            "The sliding window auth_max_failures counts over; it starts at an address's first "
            "failure, and a failure weighs less and less over one more window.", "3600"),
        Key("auth_failure_delay", "number (seconds)", "1.0",
            "How long a failed AUTH waits before its 535 5.7.8 answer (that session only).",
            "2"),
        Key("ldap_group_query", "string", "[ldap] group_query",
            "The [ldap.NAME] group query mail-from-group and rcpt-to-group use for mail "
            "received here.", '"corp"'),
    )),
    Section("[sender_groups.NAME]", "Sender groups",
            "Which connecting hosts get which mail flow policy (first match wins).", (
        Key("ips", "list of strings", "[]", "IP addresses and CIDR networks.",
            '["192.0.2.0/24", "::1"]'),
        Key("hosts", "list of strings", "[]", "Host name patterns (shell wildcards).",
            '["*.example.org"]'),
        Key("tls_subjects", "list of strings", "[]",
            "Shell patterns over a verified client certificate's subject (RFC 4514); the group "
            "is chosen again after STARTTLS (needs the listener's tls_client_ca).",
            '["CN=mx.partner.example,O=Partner Ltd"]'),
        Key("policy", "string", "(required)", "The [policies.NAME] for these hosts.",
            '"relayed"'),
    )),
    Section("[policies.NAME]", "Mail flow policies",
            "What a connecting host may do (AsyncOS's host access table); `default` exists "
            "even when not written (ACCEPT).", (
        Key("action", '"ACCEPT", "RELAY", "REJECT" or "TCPREFUSE"', '"ACCEPT"',
            "ACCEPT: mail for local_domains; RELAY: our own users' mail, anywhere.", '"RELAY"'),
        Key("direction", '"incoming" or "outgoing"', "outgoing for RELAY, else incoming",
            "Which mail policies and content filters apply.", '"outgoing"'),
        Key("max_message_size", "integer (bytes)", "20971520", "Larger messages get 552.",
            "52428800"),
        Key("max_recipients", "integer", "100", "Recipients per message; more get 452.", "50"),
        Key("max_messages_per_hour", "integer", "0",
            "MAIL commands per hour from one client IP, counted over every listener process; "
            "more get 452 4.7.0; 0: no cap.", "1000"),
        Key("max_connections_per_ip", "integer", "50",
            "Concurrent connections from one IP, counted over every listener process; more "
            "get 421 4.7.0 at connect; 0: no cap.", "20"),
        Key("max_messages_per_connection", "integer", "0",
            "MAIL commands one connection may give; the next is answered 421 4.7.0 and the "
            "connection closed; 0: no cap.", "100"),
        Key("max_recipients_per_hour", "integer", "0",
            "Recipients accepted per hour from one client IP, counted over every listener "
            "process; more get 452 4.7.0 at RCPT; 0: no cap.", "5000"),
        Key("max_recipients_per_hour_per_sender", "integer", "0",
            "Recipients accepted per hour for one envelope sender, whatever the client's IP "
            "(the null sender excepted); more get 452 4.7.0; 0: no cap.",
            "500"),
        Key("smime_decrypt_verify", "boolean", "false",
            "Decrypt and verify inbound S/MIME with [smime].", "true"),
        Key("smime_signature", '"retain" or "remove"', '"retain"',
            "Keep or strip a verified signature.", '"remove"'),
        Key("harvest", "boolean", "false", "Harvest signers' certificates into the key store.",
            "true"),
        Key("harvest_on_failed_verification", "boolean", "false",
            "Harvest even when verification failed.", "false"),
        Key("harvest_updated_keys", "boolean", "false",
            "Replace a harvested key by a newer one (else held for review).", "true"),
        Key("max_header_bytes", "integer (bytes)", "1048576", "Size of the header block.",
            "262144"),
        Key("max_header_fields", "integer", "1000", "Header fields per message.", "500"),
        Key("max_addresses_per_header", "integer", "1000", "Addresses in one header.", "500"),
        Key("max_mime_parts", "integer", "1000", "MIME parts per message.", "500"),
        Key("max_mime_depth", "integer", "50", "MIME nesting depth.", "20"),
        Key("bare_line_endings", '"reject" or "normalize"', '"reject"',
            "A message line ending in a bare LF: refused with 550 5.5.2, or turned into CRLF "
            "for clients that write Unix line ends (Postfix 3.9's default). Only CRLF.CRLF ever "
            "ends DATA, and a bare CR or a NUL is always refused.", '"normalize"'),
        Key("require_tls", "boolean", "false",
            "530 5.7.0 to MAIL from a client of this policy until it has done STARTTLS.",
            "true"),
        Key("auth_relay", "boolean", "true",
            "A session that authenticated (a listener's auth) may relay: recipients outside "
            "local_domains are accepted, and its mail takes the outgoing mail policies "
            "(Postfix's permit_sasl_authenticated).", "false"),
    )),
    Section("[certificates.NAME]", "Certificates",
            "S/MIME certificates and keys that profiles sign with and the gateway decrypts with.", (
        Key("cert", "path", "(required)", "PEM certificate (and chain).",
            '"certs/org.crt.pem"'),
        Key("key", "path", NONE, "PEM private key belonging to cert.", '"certs/org.key.pem"'),
    )),
    Section("[profiles.NAME]", "Sending profiles",
            "How S/MIME mail goes out; filters name them in smime-gateway(\"NAME\").", (
        Key("mode", '"sign", "encrypt", "sign-encrypt" or "triple"', "(required)",
            "What the profile does.", '"sign-encrypt"'),
        Key("signing_certificate", "string", NONE,
            "A [certificates.NAME]; required when the mode signs.", '"org"'),
        Key("sign_mode", '"opaque" or "detached"', '"detached"', "The signature's form.",
            '"opaque"'),
        Key("missing_key_action", '"bounce", "drop" or "split"', '"bounce"',
            "A recipient without a public key.", '"split"'),
        Key("cipher", "string", "the S/MIME engine's default",
            "aes128-cbc, aes192-cbc, aes256-cbc, aes128-gcm or aes256-gcm.", '"aes256-gcm"'),
    )),
    Section("[incoming_policies.NAME]", "Incoming mail policies",
            "Which content filters apply to which incoming recipients (first match wins; a "
            "policy named Default catches the rest).", (
        Key("senders", "list of strings", "[] (any)",
            "joe@example.com, jim@, @example.com, @.example.com, or an LDAP group as "
            "\"NAME.ldapgroup: GROUP\" (NAME an [ldap.NAME] query; a directory that does not "
            "answer defers the message).", '["@partner.example"]'),
        Key("recipients", "list of strings", "[] (any)", "As senders.", '["sales@"]'),
        Key("content_filters", "list of paths", "[]", "Content filter files for this policy.",
            '["filters/confidential-body.filter"]'),
        Key("antispam", "boolean", "true",
            "Scan this policy's mail with [antispam] (Rspamd), after the message filters; "
            "skip-spamcheck() in a message filter skips it for one message.",
            "false"),
        Key("spam_action", '"deliver", "drop" or "quarantine"', '"deliver"',
            "What happens to positive spam (Rspamd's reject action) for this policy; "
            "suspect and ham are always delivered. Content filters see the verdict either way "
            "(spam-verdict, spam-score, $SpamScore).", '"quarantine"'),
        Key("spam_quarantine", "string", NONE,
            "The [quarantines.NAME] for spam_action = \"quarantine\".", '"Policy"'),
        Key("spam_subject_tag", "string", NONE,
            "Prepended to the Subject of positive spam that is delivered.", '"[SPAM]"'),
        Key("antivirus", "boolean", "true",
            "Scan this policy's mail with [antivirus] (clamd), after anti-spam; "
            "skip-viruscheck() in a message filter skips it for one message.", "false"),
        Key("virus_action", '"deliver", "drop" or "quarantine"', '"drop"',
            "What happens to infected mail for this policy (clean and unscannable mail is "
            "delivered; content filters see virus-verdict).", '"quarantine"'),
        Key("virus_quarantine", "string", NONE,
            "The [quarantines.NAME] for virus_action = \"quarantine\".", '"Policy"'),
    )),
    Section("[outgoing_policies.NAME]", "Outgoing mail policies",
            "The same keys as [incoming_policies.NAME], for outgoing mail.", (
        Key("senders", "list of strings", "[] (any)", "As for incoming mail policies.",
            '["@example.org"]'),
        Key("recipients", "list of strings", "[] (any)", "As for incoming mail policies.",
            '["@partner.example"]'),
        Key("content_filters", "list of paths", "[]", "Content filter files for this policy.",
            '["filters/outgoing-policy.filter"]'),
        Key("antispam", "boolean", "false",
            "Scan this policy's mail with [antispam] (Rspamd), after the message filters; "
            "skip-spamcheck() in a message filter skips it for one message. Off by default for outgoing mail, as on AsyncOS.",
            "true"),
        Key("spam_action", '"deliver", "drop" or "quarantine"', '"deliver"',
            "What happens to positive spam (Rspamd's reject action) for this policy; "
            "suspect and ham are always delivered. Content filters see the verdict either way "
            "(spam-verdict, spam-score, $SpamScore).", '"quarantine"'),
        Key("spam_quarantine", "string", NONE,
            "The [quarantines.NAME] for spam_action = \"quarantine\".", '"Policy"'),
        Key("spam_subject_tag", "string", NONE,
            "Prepended to the Subject of positive spam that is delivered.", '"[SPAM]"'),
        Key("antivirus", "boolean", "true",
            "Scan this policy's mail with [antivirus] (clamd), after anti-spam; "
            "skip-viruscheck() in a message filter skips it for one message.", "false"),
        Key("virus_action", '"deliver", "drop" or "quarantine"', '"drop"',
            "What happens to infected mail for this policy (clean and unscannable mail is "
            "delivered; content filters see virus-verdict).", '"quarantine"'),
        Key("virus_quarantine", "string", NONE,
            "The [quarantines.NAME] for virus_action = \"quarantine\".", '"Policy"'),
    )),
    Section("[dictionaries]", "Dictionaries",
            "NAME = file: word lists filters use in dictionary-match(\"NAME\").", (
        Key("NAME", "path", NONE, "One term per line, optional \", weight\".",
            '"dictionaries/macro-keys.txt"'),
    )),
    Section("[text_resources]", "Text resources",
            "NAME = file: disclaimers and notices filters insert by name.", (
        Key("NAME", "path", NONE, "The text (UTF-8).", '"resources/legal-disclaimer.txt"'),
    )),
    Section("[delivery]", "Delivery",
            "Where accepted mail goes (for domains no [routes] entry names): exactly one of relay, "
            "reinject, mx = true, maildir.", (
        Key("relay", "string (host:port)", NONE, "Send everything to this SMTP host.",
            '"127.0.0.1:10025"'),
        Key("reinject", "string (host:port)", NONE,
            "Postfix's re-injection smtpd (content filter setup).", '"127.0.0.1:10026"'),
        Key("mx", "boolean", "false", "Deliver by DNS MX lookup.", "true"),
        Key("mx_port", "integer", "25",
            "The port MX delivery connects to (tests point it at a local sink).", "25"),
        Key("maildir", "path", NONE, "Deliver into maildirs below this folder (testing).",
            '"var/maildir"'),
        Key("retry_schedule", "list of numbers (seconds)", "[60, 300, 900, 3600]",
            "Waits between delivery attempts; the last repeats.", "[30, 120, 600]"),
        Key("max_queue_lifetime", "number (seconds)", "432000.0",
            "A message undeliverable this long bounces.", "86400"),
        Key("delay_notice_after", "number (seconds)", "14400.0",
            "One \"still trying\" DSN after this long (NOTIFY=DELAY); 0: never.", "7200"),
        Key("connect_timeout", "number (seconds)", "30.0", "Connecting to the next hop.", "10"),
        Key("workers", "integer", "16", "Transactions each queue process keeps open at once "
            "is twice this.", "8"),
    )),
    Section("[routes]", "SMTP routes",
            "NAME = next hops, per recipient domain: NAME is \"example.com\" (exact), "
            "\".example.com\" (its subdomains) or \"*\" (every other domain), quoted. The most "
            "specific entry wins (exact, then the longest suffix, then \"*\"); a filter's "
            "alt-mailhost comes before any route, and a domain no route names goes to "
            "[delivery] (which may name no target when there is a \"*\" route). Tracking "
            "records the route taken (`route`); `filterlang routes -c FILE test ADDRESS` shows "
            "the choice.", (
        Key("NAME", "string or list", NONE,
            "\"host:port\" (\"[192.0.2.1]:25\" for an address; no port: 25), or a list of "
            "them tried in order (the next only on a temporary failure), or a list of tables "
            "{ host = \"...\", port = 25, preference = 10 } tried lowest preference first; "
            "\"mx\": the recipient domain's MX hosts (on [delivery] mx_port); "
            "\"maildir:FOLDER\": maildirs below FOLDER (relative to this file). \"lmtp:\" "
            "is refused: the delivery client speaks SMTP only.",
            '["[127.0.0.1]:10025", "backup.example:2525"]'),
    )),
    Section("[quarantines.NAME]", "Quarantines",
            "Quarantines filters name in quarantine(\"NAME\"); `filterlang quarantine -c` "
            "lists them.", (
        Key("retention_days", "integer", "14", "Days a message is kept.", "30"),
    )),
    Section("[smime]", "Inbound S/MIME",
            "Verification and decryption for policies with smime_decrypt_verify.", (
        Key("trust_anchors", "list of paths", "[]", "CA certificates (files or folders) "
            "trusted for verification.", '["certs/partners"]'),
        Key("crls", "list of paths", "[]", "Certificate revocation lists (files or folders).",
            '["certs/crls"]'),
        Key("decryption_certificates", "list of strings", "every certificate with a key",
            "The [certificates.NAME] the gateway decrypts with.", '["org"]'),
        Key("on_decrypt_failure", '"deliver" or "quarantine"', '"deliver"',
            "A message the gateway cannot decrypt.", '"quarantine"'),
        Key("decrypt_failure_quarantine", "string", NONE,
            "The [quarantines.NAME] for it (with on_decrypt_failure = \"quarantine\").",
            '"Policy"'),
        Key("require_signed_attributes", "boolean", "true",
            "A signer without signed attributes is not verified.", "true"),
        Key("accept_domain_certificates", "boolean", "true",
            "A signer certificate whose subject alternative name holds a DNS name (exact, or a "
            "*. wildcard over one label) signs for every sender of that domain: partner "
            "gateways' organisation certificates (binding: domain).", "true"),
        Key("legacy", "boolean", "false",
            "Read old mail (RFC 8551 Appendix B): SHA-1, RSA-1024 and DSA signatures are "
            "accepted, each flagged.", "true"),
        Key("at_signing_time", "boolean", "false",
            "With legacy: validate certificate paths at the signer's signing time, not now "
            "(it trusts the sender's clock).", "true"),
        Key("decrypt_3des", "boolean", "true",
            "Read 3DES envelopes with a warning (true) or refuse them as unsupported-algorithm "
            "(false); 3DES is never chosen for sending.", "true"),
    )),
    Section("[encryption_profiles.NAME]", "Encryption profiles",
            "What the encrypt and encrypt-deferred actions name: carried out with S/MIME "
            "through a sending profile (its mode, cipher and missing-key action apply).", (
        Key("sending_profile", "string", "(required)",
            "A [profiles.NAME] whose mode encrypts (encrypt, sign-encrypt or triple).", '"x"'),
        Key("tls_verify", "boolean", "false",
            "Rule 1 (TLS first) delivers in clear only over TLS that meets the recipient "
            "domain's [tls.outbound] policy raised to at least encrypt; this raises it to "
            "verify (the next hop's certificate must verify for its host name).", "true"),
        Key("tls_ca_file", "path", NONE,
            "With tls_verify: the CAs that may sign the next hop's certificate (else the "
            "system's).", '"certs/partners/ca.pem"'),
    )),
    Section("[tls.outbound]", "Outbound TLS",
            "The TLS policy for delivery to every domain without an entry of its own (Postfix's "
            "smtp_tls_security_level); rule 1 of an encryption profile asks it too, raised to "
            "at least encrypt.", (
        Key("level", '"none", "may", "encrypt", "verify" or "secure"', '"may"',
            "Postfix's levels: never STARTTLS; TLS when offered (else in clear); TLS required, "
            "any certificate; TLS required, chain and name checked; as verify, configured names "
            "only. Not met: 451 4.7.x, never a downgrade. \"dane\" is refused (the resolver "
            "does not validate DNSSEC).", '"verify"'),
        Key("match", "list of strings", "the next hop's name (verify), the recipient domain and its subdomains (secure)",
            "Names the certificate must carry (verify and secure only); \".example.com\": any "
            "name below it.", '["mx.partner.example", ".partner.example"]'),
        Key("min_version", '"TLSv1", "TLSv1.1", "TLSv1.2" or "TLSv1.3"', '"TLSv1.2"',
            "The oldest TLS version accepted.", '"TLSv1.3"'),
        Key("ciphers", "string", "OpenSSL's defaults",
            "An OpenSSL cipher list (TLS 1.2 and below).", '"ECDHE+AESGCM:ECDHE+CHACHA20"'),
        Key("ca_file", "path", "(none)",
            "CA certificates (a PEM file or a folder) for verify and secure; else the system's. "
            "MTA-STS policy fetches verify the policy host against them too.",
            '"certs/partners/ca.pem"'),
        Key("mta_sts", "boolean", "true",
            "MTA-STS (RFC 8461) for recipient domains without a [tls.outbound.domains] entry, "
            "where mail goes by MX ([delivery] mx or an \"mx\" route): the _mta-sts TXT record "
            "is looked up, the policy fetched from https://mta-sts.DOMAIN/.well-known/"
            "mta-sts.txt (certificate verified, no redirects, at most 64 KiB) and kept in memory "
            "per queue process for its max_age (fetched again when the record's id changes). "
            "Mode enforce applies as verify against the policy's mx names; testing is only "
            "recorded in tracking (event mta_sts); none changes nothing. On by default: it "
            "only ever raises the TLS a domain gets, and costs a domain that publishes nothing "
            "one cached DNS query.", "false"),
        Key("mta_sts_port", "integer", "443",
            "The policy host's HTTPS port; for labs and tests only (RFC 8461 fetches on 443).",
            "443"),
    )),
    Section("[tls.outbound.domains.NAME]", "Outbound TLS per domain",
            "NAME: a recipient domain (\"example.com\", quoted) or \".example.com\" for its "
            "subdomains; the exact entry wins, then the longest suffix. Keys not set come from "
            "[tls.outbound] (Postfix's smtp_tls_policy_maps).", (
        Key("level", '"none", "may", "encrypt", "verify" or "secure"', 'as [tls.outbound]',
            "Postfix's levels: never STARTTLS; TLS when offered (else in clear); TLS required, "
            "any certificate; TLS required, chain and name checked; as verify, configured names "
            "only. Not met: 451 4.7.x, never a downgrade. \"dane\" is refused (the resolver "
            "does not validate DNSSEC).", '"secure"'),
        Key("match", "list of strings", "as [tls.outbound]",
            "Names the certificate must carry (verify and secure only); \".example.com\": any "
            "name below it.", '["mx.partner.example", ".partner.example"]'),
        Key("min_version", '"TLSv1", "TLSv1.1", "TLSv1.2" or "TLSv1.3"', 'as [tls.outbound]',
            "The oldest TLS version accepted.", '"TLSv1.3"'),
        Key("ciphers", "string", "as [tls.outbound]",
            "An OpenSSL cipher list (TLS 1.2 and below).", '"ECDHE+AESGCM:ECDHE+CHACHA20"'),
        Key("ca_file", "path", "as [tls.outbound]",
            "CA certificates (a PEM file or a folder) for verify and secure; else the system's.",
            '"certs/partners/ca.pem"'),
    )),
    Section("[alerts]", "Alerts", "Where operational alerts go.", (
        Key("log", "path", NONE, "A JSON-lines file of alerts.", '"var/alerts.jsonl"'),
        Key("email", "string", NONE, "An address alerts are mailed to.",
            '"postmaster@example.org"'),
    )),
    Section("[metrics]", "Metrics", "The Prometheus endpoint.", (
        Key("address", "string", '"127.0.0.1"', "Loopback only (127.0.0.1, ::1, localhost).",
            '"127.0.0.1"'),
        Key("port", "integer", "0", "0: no endpoint.", "9125"),
    )),
    Section("[dns]", "DNS",
            "The one resolver (dnspython, asynchronous, cached) behind SPF, DKIM keys, DMARC, "
            "dnslist rules, the reputation zone and MX delivery.", (
        Key("nameservers", "list of strings", "[]",
            'Servers as "ip" or "ip:port"; empty: those of /etc/resolv.conf.',
            '["192.0.2.53", "192.0.2.54:53"]'),
        Key("timeout", "number (seconds)", "5.0", "For one whole look-up.", "3.0"),
        Key("cache_size", "integer", "10000",
            "Answers kept, each for its TTL (negative answers too, failures never).", "20000"),
        Key("reputation_zone", "string", NONE,
            "A DNS zone answering a TXT score per client IP, for the reputation rules.",
            '"rep.example.net"'),
        Key("uri_lists", "list of strings", "[]",
            "DNS lists of domain names (RFC 5782 2.3, e.g. Spamhaus DBL, SURBL): for these "
            "zones dnslist('zone') asks the host names of the URLs in the message's text "
            "parts (each registrable domain, then the host), not the client IP; the first "
            "listed name gives the code. An answer in 127.255.255.0/24 (query refused) is a "
            "problem in the trace, not a listing.", '["dbl.example.net"]'),
        Key("uri_limit", "integer", "20",
            "URL host names asked per message and list, in order of appearance.", "50"),
    )),
    Section("[authentication]", "Email authentication",
            "Inbound SPF, DKIM, DMARC and ARC, checked once per message before the message "
            "filters, stamped as one Authentication-Results header. Absent: the rules that "
            "need them are unavailable.", (
        Key("authserv_id", "string", "(required)",
            "This gateway's name in Authentication-Results; arriving ones claiming it are "
            "removed.", '"mx.example.org"'),
        Key("spf", "boolean", "true", "Check SPF (MAIL FROM and HELO).", "true"),
        Key("dkim", "boolean", "true", "Verify DKIM signatures.", "true"),
        Key("dmarc", "boolean", "true", "Evaluate DMARC.", "true"),
        Key("arc", "boolean", "true", "Validate ARC chains.", "true"),
    )),
    Section("[antispam]", "Anti-spam",
            "Rspamd, asked over its HTTP protocol (POST /checkv2 with the envelope as IP, "
            "Helo, From, Rcpt and User headers) once per message after the message filters, "
            "for the mail policies whose antispam is on. Absent: spam-verdict and spam-score "
            "are unavailable. A scanner that does not answer follows on_filter_error.", (
        Key("rspamd", "string", "(required)",
            "Rspamd's normal worker (its proxy works too) as http://HOST:PORT.",
            '"http://127.0.0.1:11333"'),
        Key("timeout", "number (seconds)", "10.0",
            "How long to wait for Rspamd to accept the connection, and for each read of its "
            "answer.", "5.0"),
        Key("max_size", "integer (bytes)", "2097152",
            "Larger messages are not scanned (their spam rules are unavailable).", "1048576"),
    )),
    Section("[antivirus]", "Anti-virus",
            "clamd, asked with INSTREAM once per message after anti-spam, for the mail "
            "policies whose antivirus is on. Absent: virus-verdict is unavailable. A scanner "
            "that does not answer follows on_filter_error.", (
        Key("clamd", "string", "(required)",
            "clamd's TCPSocket as tcp://HOST:PORT, or its LocalSocket as an absolute path.",
            '"/run/clamav/clamd.ctl"'),
        Key("timeout", "number (seconds)", "30.0",
            "How long to wait for clamd to accept the connection and each chunk, and for its "
            "answer.", "10.0"),
        Key("max_size", "integer (bytes)", "10485760",
            "Larger messages are not sent to clamd and are unscannable; keep it at or below "
            "clamd's StreamMaxLength.", "26214400"),
    )),
    Section("[ldap]", "LDAP",
            "Which [ldap.NAME] group query the group rules use.", (
        Key("group_query", "string", "the only [ldap.NAME]",
            "The query of mail-from-group and rcpt-to-group (a listener's ldap_group_query "
            "wins); required when there are several and a listener names none.", '"corp"'),
    )),
    Section("[ldap.NAME]", "LDAP group queries",
            "A directory server and its group query (ldap3), for mail-from-group, "
            "rcpt-to-group and mail policies' \"NAME.ldapgroup: GROUP\" entries. The "
            "addresses and groups a message can need are asked before its filters run; a "
            "server that does not answer defers the message (4.x.x, retried), never \"not in "
            "the group\".", (
        Key("url", "string", "(required)", "ldap://HOST[:PORT] or ldaps://HOST[:PORT].",
            '"ldaps://ldap.example.org"'),
        Key("bind_dn", "string", "(none: anonymous)", "The DN to bind as.",
            '"cn=mailgw,ou=services,dc=example,dc=org"'),
        Key("bind_password", "string", NONE,
            "Its password (or bind_password_file; not both).", '"secret"'),
        Key("bind_password_file", "path", NONE,
            "A file holding the password (its last line end is not part of it).",
            '"ldap.secret"'),
        Key("base", "string", "(required)", "Where to search.", '"dc=example,dc=org"'),
        Key("filter", "string", "(required)",
            "The search filter: {a} the address, {u} its local part, {d} its domain, {g} the "
            "group, each escaped (RFC 4515). With {g}: a member when an entry is found; "
            "without: the address's entries, whose `attribute` names their groups.",
            '"(&(objectClass=groupOfNames)(cn={g})(member=uid={u},ou=people,dc=example,dc=org))"'),
        Key("attribute", "string", NONE,
            "Without {g} in the filter: the attribute naming the groups (cn; a DN such as "
            "memberOf's counts by its first value).", '"memberOf"'),
        Key("timeout", "number (seconds)", "5.0", "For connecting, and for each answer.",
            "3.0"),
        Key("cache_ttl", "number (seconds)", "300.0",
            "How long an answer (member or not) is kept; failures never are.", "60.0"),
        Key("cache_size", "integer", "10000", "Answers kept at most (the oldest go first).",
            "50000"),
        Key("ca_file", "path", "the system's CAs", "ldaps: the CAs of the server's certificate.",
            '"certs/partners/ca.pem"'),
    )),
    Section("[dkim.NAME]", "DKIM signing",
            "Outgoing mail from the domain NAME (or a subdomain) is DKIM-signed after every "
            "S/MIME operation; skip-dkim-signing() in a filter leaves a message unsigned.", (
        Key("selector", "string", "(required)", "The DNS selector of the key.", '"mail2026"'),
        Key("key", "path", "(required)",
            "The private key (`filterlang dkim keygen` writes it and prints the TXT record).",
            '"keys/dkim.pem"'),
        Key("canonicalization", '"relaxed/simple", "relaxed/relaxed", "simple/simple" or '
            '"simple/relaxed"', '"relaxed/simple"', "Header/body canonicalization.",
            '"relaxed/relaxed"'),
        Key("headers", "list of strings", "RFC 6376's list",
            "Header fields to sign; must include From.", '["From", "To", "Subject", "Date"]'),
    )),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The reference page, Markdown."""
    out = [
        "# gateway.toml reference",
        "",
        "<!-- Generated from runtime/config/reference.py by `make docs`; do not edit. -->",
        "",
        "Every key `filterlang serve -c gateway.toml` reads. Every section is optional except",
        "`[[listeners]]` and `[delivery]`; relative paths are relative to the file. A key that",
        "is not listed here is an error naming the nearest valid key, and `filterlang serve",
        "--check -c gateway.toml` checks everything serving needs (docs/deploy.md).",
        "`examples/gateway.toml` is a complete example.",
        "",
        "The administrative commands (`keys`, `queue`, `quarantine`, `profiles`, `test`, `lint`)",
        "take the same file with `-c` (default `$FILTERLANG_CONFIG`) and use its key store,",
        "spool, quarantines and names.",
        "",
    ]
    for section in SECTIONS:
        out += [f"## {section.title}" + (f": `{section.header}`" if section.header else ""), "",
                section.doc, "",
                "| key | type | default | meaning | example |",
                "|---|---|---|---|---|"]
        for k in section.keys:
            out.append(f"| `{k.name}` | {_cell(k.type)} | `{_cell(k.default)}` | "
                       f"{_cell(k.doc)} | `{_cell(k.example)}` |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    if argv[1:] == ["--write"]:
        (root / PAGE).write_text(render(), encoding="utf-8")
        print(f"wrote {PAGE}")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
