"""The TOML test-suite format (issue 3 item 9): expectations kept beside the filters.

::

    filters = ["filters.flt"]            # relative to the suite file
    # or: config = "gateway.toml"        # the whole configured gateway, as `filterlang test -c`
    #     (then remote_ip, helo, listener, auth_user, tls, tls_client_subject describe the SMTP
    #     session and the configuration decides policies, sender groups, S/MIME and profiles)
    [resources]                          # optional: dictionaries = {Name = "file"}, text_resources = {...}
    [[incoming_policies]]                # optional: mail policies, as in a --policies file
    [[case]]
    name = "big message is dropped"
    message = "msgs/big.eml"             # or: raw = \"\"\"...\"\"\"
    mail_from = "a@example.com"
    rcpt = ["b@example.com"]
    remote_ip = "10.0.0.1"  listener = "Inbound"  direction = "incoming"  smime_state = "none"
    authentication = {spf = "Fail", dkim = "none", dmarc = "Fail", dmarc_policy = "reject"}
                                         # the SPF/DKIM/DMARC results the gateway would find
                                         # (optional; without it those rules are unavailable)
    services = "answers.toml"            # or a table: recorded provider answers (LDAP groups,
                                         # DNS lists, reputation, authentication), replayed
                                         # instead of asking (runtime.pipeline.recorded); in
                                         # config suites too
    [case.expect]
    matched = ["too_big"]                # exactly these filters matched (optional)
    not_matched = ["x"]                  # or: these did not
    final = "drop()"                     # or "none"
    recipients = {"b@example.com" = "drop"}
    headers_present = ["X-Foo"]
    headers_absent = ["X-Bar"]
    headers = {"X-Foo" = "regex"}
    policy = "sales_team"                # headers of this policy's splinter (content filters)
    body_contains = ["text"]             # the resulting body (raw or a decoded text part) has it
    body_not_contains = ["text"]
    body_equals = "expected-body.txt"    # the resulting body is this file (line ends aside)

Every key is checked: a misspelt one (``matchd``) is an error naming the nearest valid key,
never an expectation that quietly checks nothing.
"""

from __future__ import annotations

import email.policy
import logging
import tomllib
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from runtime.config.schema import unknown_keys
from runtime.engine import rx
from runtime.engine.context import Connection, Envelope, SmimeState
from runtime.engine.loader import FilterLoadError, load_program
from runtime.engine.resources import Dictionary, Resources
from runtime.engine.services import Services
from runtime.pipeline.offline import simulate
from runtime.pipeline.policies import Policies, load_policies
from runtime.pipeline.recorded import RecordedError, load_recorded, read_recorded, scanning
from runtime.pipeline.trace import MessageTrace

log = logging.getLogger(__name__)


class SuiteError(ValueError):
    pass


@frozen
class CaseResult:
    suite: str
    name: str
    diffs: tuple[str, ...]
    trace: MessageTrace


SUITE_KEYS = ("filters", "config", "resources", "incoming_policies", "outgoing_policies",
              "policies", "case")
# What a case of a `config = ...` suite may say: the configuration decides the rest.
SESSION_KEYS = ("name", "message", "raw", "mail_from", "rcpt", "remote_ip", "helo", "listener",
                "auth_user", "tls", "tls_client_subject", "services", "expect")
CASE_KEYS = (*SESSION_KEYS, "direction", "smime_state", "sender_group", "authentication",
             "scanning")
EXPECT_KEYS = ("matched", "not_matched", "final", "recipients", "headers_present",
               "headers_absent", "headers", "policy", "body_contains", "body_not_contains",
               "body_equals")
RESOURCE_KEYS = ("dictionaries", "text_resources", "texts", "archive_dir")
DICTIONARY_KEYS = ("file", "case_sensitive", "whole_words")
LIST_KEYS = ("matched", "not_matched", "headers_present", "headers_absent", "body_contains",
             "body_not_contains")


def load_resources(data: dict[str, Any], base: Path, *, where: str = "", section: str = "",
                   warn: Callable[[str], None] | None = None) -> Resources:
    """Dictionaries, text resources and the archive folder of a suite's ``[resources]`` or a
    ``--resources`` file; an unknown key is a `SuiteError` naming the nearest known one.
    ``where`` is the file, ``section`` the table in it ("resources" in a suite)."""
    prefix = (f"{where}: " if where else "") + (f"{section}." if section else "")
    bad = unknown_keys(data, RESOURCE_KEYS, "")
    for name, spec in data.get("dictionaries", {}).items():
        bad += unknown_keys(spec, DICTIONARY_KEYS, f"dictionaries.{name}")
        if isinstance(spec, dict) and "file" not in spec:
            bad.append(f"dictionaries.{name}: give its file: file = \"words.txt\"")
    if "texts" in data and "text_resources" in data:
        bad.append("texts: also given as text_resources; keep text_resources")
    if bad:
        raise SuiteError("\n".join(prefix + b for b in bad))
    if "texts" in data and warn is not None:
        warn(f"{prefix}texts: deprecated spelling; write text_resources (as in gateway.toml)")
    res = Resources()
    for name, spec in data.get("dictionaries", {}).items():
        if isinstance(spec, str):
            spec = {"file": spec}
        res.dictionaries[name] = Dictionary.load(name, base / spec["file"],
                                                 case_sensitive=bool(spec.get("case_sensitive", False)),
                                                 whole_words=bool(spec.get("whole_words", False)))
    for name, text in data.get("text_resources", data.get("texts", {})).items():
        res.texts[name] = str(text)
    if "archive_dir" in data:
        res.archive_dir = base / str(data["archive_dir"])
    return res


def _body(message: bytes) -> tuple[str, list[str]]:
    """The body of a message as sent (after the header block), and its decoded text parts."""
    raw = message.replace(b"\r\n", b"\n")
    _, sep, body = raw.partition(b"\n\n")
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    texts = []
    for part in parsed.walk():
        if part.get_content_maintype() == "text":
            try:
                texts.append(str(part.get_content()))
            except (LookupError, ValueError):  # an unknown charset: the raw body still counts
                continue
    return (body if sep else b"").decode("utf-8", "replace"), texts


def _check_body(exp: dict[str, Any], result: bytes, base: Path) -> list[str]:
    diffs: list[str] = []
    if not any(k in exp for k in ("body_contains", "body_not_contains", "body_equals")):
        return diffs
    body, texts = _body(result)
    for needle in exp.get("body_contains", []):
        if needle not in body and not any(needle in t for t in texts):
            diffs.append(f"body: expected to contain {needle!r}, it does not")
    for needle in exp.get("body_not_contains", []):
        if needle in body or any(needle in t for t in texts):
            diffs.append(f"body: expected not to contain {needle!r}, it does")
    if "body_equals" in exp:
        want = (base / str(exp["body_equals"])).read_bytes().replace(b"\r\n", b"\n")
        got = body.encode("utf-8")
        if want.rstrip(b"\n") != got.rstrip(b"\n"):
            diffs.append(f"body: expected the contents of {exp['body_equals']}, got "
                         f"{got[:200].decode('utf-8', 'replace')!r}"
                         f"{'...' if len(got) > 200 else ''}")
    return diffs


def _check(case: dict[str, Any], t: MessageTrace, base: Path = Path()) -> list[str]:
    exp = case.get("expect", {})
    diffs: list[str] = []
    matched = t.matched()
    if "matched" in exp and sorted(exp["matched"]) != sorted(matched):
        diffs.append(f"matched filters: expected {sorted(exp['matched'])}, got {sorted(matched)}")
    for n in exp.get("not_matched", []):
        if n in matched:
            diffs.append(f"filter {n}: expected not matched, but it matched")
    if "final" in exp:
        want = None if exp["final"] in ("none", "") else exp["final"]
        if want != t.final and not (want and t.final and t.final.startswith(want)):
            diffs.append(f"final: expected {want or 'none'}, got {t.final or 'none'}")
    for r, d in exp.get("recipients", {}).items():
        got = t.recipients.get(r)
        if got != d:
            diffs.append(f"recipient {r}: expected {d}, got {got or '(no such recipient)'}")
    # headers are checked on the splinter of exp["policy"], else on the first splinter's result
    policy = exp.get("policy") or next(iter(t.results), "")
    result = t.results.get(policy, t.result)
    head = BytesHeaderParser(policy=email.policy.default).parsebytes(result)
    for h in exp.get("headers_present", []):
        if h not in head:
            diffs.append(f"header {h}: expected present, absent")
    for h in exp.get("headers_absent", []):
        if h in head:
            diffs.append(f"header {h}: expected absent, present: {head[h]!s}")
    for h, pattern in exp.get("headers", {}).items():
        values = [str(v) for v in head.get_all(h, [])]
        if not any(rx.search(pattern, v) for v in values):
            diffs.append(f"header {h}: expected a value matching {pattern!r}, got {values}")
    return diffs + _check_body(exp, result, base)


def _check_keys(path: Path, data: dict[str, Any]) -> None:
    """Every key of the suite is one it knows, so no expectation is misspelt into nothing."""
    configured = "config" in data
    bad = unknown_keys(data, SUITE_KEYS, "")
    if configured:
        bad += [f"{k}: has no effect with config = ...: the configuration decides it; remove it"
                for k in ("filters", "resources", "incoming_policies", "outgoing_policies",
                          "policies") if k in data]
    cases = data.get("case", [])
    if not isinstance(cases, list):
        bad.append("case: must be [[case]] tables")
        cases = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            bad.append(f"case[{i}]: must be a table ([[case]])")
            continue
        where = f"case[{i}]" + (f" ({case['name']!r})" if "name" in case else "")
        bad += unknown_keys(case, SESSION_KEYS if configured else CASE_KEYS, where)
        if configured:
            bad = [b.replace("unknown key;", "not a key of a config suite case;", 1) for b in bad]
        exp = case.get("expect", {})
        if not isinstance(exp, dict):
            bad.append(f"{where}.expect: must be a table ([case.expect])")
            continue
        bad += unknown_keys(exp, EXPECT_KEYS, f"{where}.expect")
        for key in LIST_KEYS:
            if key in exp and not isinstance(exp[key], list):
                bad.append(f"{where}.expect.{key}: must be a list, e.g. [{exp[key]!r}]")
        if "body_equals" in exp and not (path.parent / str(exp["body_equals"])).is_file():
            bad.append(f"{where}.expect.body_equals: no file {exp['body_equals']!r} beside the suite")
    if bad:
        raise SuiteError("\n".join(f"{path}: {b}" for b in bad))


# A configured gateway for `config = "..."` suites: given the config file, a function that
# traces one case (its fields, the message, its name, the provider answers it states). The command line supplies it: it needs
# the mail server's listener and router, which this layer does not import.
CaseRunner = Callable[[dict[str, Any], bytes, str, Services | None], MessageTrace]
GatewayLoader = Callable[[Path], CaseRunner]


def _case_message(path: Path, base: Path, case: dict[str, Any], name: str) -> bytes:
    if "raw" in case:
        return str(case["raw"]).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    if "message" in case:
        try:
            return (base / case["message"]).read_bytes()
        except OSError as exc:
            raise SuiteError(f"{path}: case {name!r}: message {case['message']!r}: cannot read "
                             f"{base / case['message']}: {exc.strerror or exc}") from None
    raise SuiteError(f"{path}: case {name!r} needs 'message' or 'raw'")


def run_suite(path: Path, *, warn: Callable[[str], None] | None = None,
              gateway: GatewayLoader | None = None) -> list[CaseResult]:
    """Run every case of one suite file; lint warnings of its filters go to ``warn``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: {exc}") from None
    base = path.parent
    _check_keys(path, data)
    if "config" in data:
        if gateway is None:
            raise SuiteError(f"{path}: config suites run from `filterlang test --suite`")
        trace_case = gateway(base / str(data["config"]))
        configured: list[CaseResult] = []
        for i, case in enumerate(data.get("case", [])):
            name = str(case.get("name", f"case {i + 1}"))
            t = trace_case(case, _case_message(path, base, case, name), name,
                           case_services(path, base, case, name))
            configured.append(CaseResult(str(path), name, tuple(_check(case, t, base)), t))
        return configured
    files = data.get("filters", [])
    if not isinstance(files, list) or not files:
        raise SuiteError(f"{path}: 'filters' must list at least one filter file")
    try:
        program = load_program([base / f for f in files])
    except FilterLoadError as exc:
        raise SuiteError(str(exc)) from None
    for w in program.warnings:
        (warn or log.warning)(w)
    filters = list(program.filters)
    warn_ = warn or log.warning
    resources = load_resources(data.get("resources", {}), base, where=str(path),
                               section="resources", warn=warn_)
    tables: dict[str, Any] = {k: data[k] for k in ("incoming_policies", "outgoing_policies")
                              if k in data}
    if "policies" in data:
        if tables:
            raise SuiteError(f"{path}: policies: also given as incoming_policies / "
                             "outgoing_policies; keep those")
        warn_(f"{path}: policies: deprecated spelling; write [[incoming_policies]] / "
              "[[outgoing_policies]] (as in gateway.toml)")
        tables = dict(data["policies"]) if isinstance(data["policies"], dict) else {}
    policies: Policies = load_policies(tables, where=str(path),
                                       warn=None if "policies" in data else warn_)
    results: list[CaseResult] = []
    for i, case in enumerate(data.get("case", [])):
        name = str(case.get("name", f"case {i + 1}"))
        raw = _case_message(path, base, case, name)
        env = Envelope.simple(str(case.get("mail_from", "sender@example.com")),
                              [str(r) for r in case.get("rcpt", ["rcpt@example.com"])])
        conn = Connection(remote_ip=str(case.get("remote_ip", "127.0.0.1")),
                          listener=str(case.get("listener", "")),
                          sender_group=str(case.get("sender_group", "")),
                          auth_user=str(case.get("auth_user", "")),
                          direction=str(case.get("direction", "incoming")),
                          tls_client_subject=str(case.get("tls_client_subject", "")))
        try:
            smime = SmimeState.parse(str(case.get("smime_state", "none")))
        except ValueError as exc:
            raise SuiteError(f"{path}: case {name!r}: {exc}") from None
        services = _stated_scanning(path, name, case.get("scanning"),
                                    case_services(path, base, case, name))
        t = simulate(raw, env, filters=filters, connection=conn, smime=smime,
                     policies=policies, resources=resources, services=services, name=name)
        results.append(CaseResult(str(path), name, tuple(_check(case, t, base)), t))
    return results


def case_services(path: Path, base: Path, case: dict[str, Any], name: str) -> Services | None:
    """The provider answers a case states: `services` (a file beside the suite, or a table;
    runtime.pipeline.recorded) and `authentication` (the results of SPF, DKIM and DMARC)."""
    where = f"{path}: case {name!r}: "
    try:
        services = None
        given = case.get("services")
        if isinstance(given, str):
            services = read_recorded(base / given)
        elif given is not None:
            services = load_recorded(given, where + "services.")
        if "authentication" in case:
            if services is not None and services.auth is not None:
                raise RecordedError(f"{where}authentication: also given in services; keep one")
            auth = load_recorded({"authentication": case["authentication"]}, where).auth
            services = attrs.evolve(services, auth=auth) if services else Services(auth=auth)
    except RecordedError as exc:
        raise SuiteError(str(exc)) from None
    return services


def _stated_scanning(path: Path, name: str, table: object, services: Services | None
                     ) -> Services | None:
    """A case's `scanning = {...}` (runtime.pipeline.recorded.scanning): what Rspamd and
    clamd would have answered."""
    if table is None:
        return services
    try:
        spam, virus = scanning(table, f"{path}: case {name!r}: ")
    except RecordedError as exc:
        raise SuiteError(str(exc)) from None
    return attrs.evolve(services or Services(), spam=spam, virus=virus)
