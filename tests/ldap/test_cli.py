"""Issue 16 item 6 through the real command line (subprocesses): `lint --config` and
`serve --check` name every rule whose provider the configuration does not define (an error,
a warning for providers in allow_unavailable); `filterlang test -c` shows what each provider
answered, asking a real slapd; `--services FILE` and a suite case's `services` replay recorded
answers instead. Texts are compared with golden files in golden/ (temporary paths and ports
replaced); FILTERLANG_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.gateway.test_cli_one_gateway import cli, free_port
from tests.support.slapd import BASE, READER_DN, READER_PW, Slapd

GOLDEN = Path(__file__).parent / "golden"

FILTERS = """\
engineers_host:
    if rcpt-to-group == 'engineers' {
        alt-mailhost('[127.0.0.1]:2600');
    }
spf_fail:
    if not spf-passed {
        insert-header('X-SPF', 'not passed');
    }
listed:
    if dnslist('bl.example') and reputation < -5 {
        insert-header('X-Listed', 'yes');
    }
"""
MSG = b"From: x@a.example\r\nTo: alice@b.example\r\nSubject: hi\r\n\r\nhello\r\n"


def golden(name: str, text: str, tmp: Path) -> None:
    text = text.replace(str(tmp.resolve()), "<tmp>").replace(str(tmp), "<tmp>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("FILTERLANG_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}"


def gateway(tmp: Path, extra: str = "", top: str = "") -> Path:
    (tmp / "route.filter").write_text(FILTERS)
    (tmp / "m.eml").write_bytes(MSG)
    cfg = tmp / "gateway.toml"
    cfg.write_text(f"""{top}
message_filters = ["route.filter"]
local_domains = ["b.example"]
[storage]
data_dir = "data"
[[listeners]]
name = "main"
port = {free_port()}
[delivery]
maildir = "maildir"
{extra}
""")
    return cfg


def ldap_section(url: str) -> str:
    return f"""[ldap.corp]
url = "{url}"
bind_dn = "{READER_DN}"
bind_password = "{READER_PW}"
base = "{BASE}"
filter = "(&(objectClass=nisMailAlias)(cn={{g}})(rfc822MailMember={{a}}))"
timeout = 2
"""


def test_lint_and_serve_check_name_rules_without_a_provider(tmp_path: Path) -> None:
    cfg = gateway(tmp_path)
    lint = cli("lint", "--config", cfg, tmp_path / "route.filter")
    assert lint.returncode == 1
    golden("lint_unavailable", lint.stdout + lint.stderr, tmp_path)
    check = cli("serve", "--check", "-c", cfg)
    assert check.returncode == 2
    golden("serve_check_unavailable", check.stdout + check.stderr, tmp_path)
    check = cli("serve", "--check", "--json", "-c", cfg)
    problems = json.loads(check.stdout)["problems"]
    assert [p["key"] for p in problems] == ["message_filters"], problems
    assert "route.filter:2:8: error[F407]" in problems[0]["message"]


def test_allow_unavailable_makes_them_warnings(tmp_path: Path) -> None:
    cfg = gateway(tmp_path, top='allow_unavailable = ["ldap", "spf", "reputation"]')
    lint = cli("lint", "--config", cfg, tmp_path / "route.filter")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    golden("lint_allowed", lint.stdout + lint.stderr, tmp_path)
    assert cli("lint", "--strict", "--config", cfg, tmp_path / "route.filter").returncode == 1
    check = cli("serve", "--check", "-c", cfg)
    assert check.returncode == 0, check.stdout + check.stderr
    # A provider the configuration defines needs no allowance; a name that is no provider is
    # a configuration error naming the nearest.
    cfg = gateway(tmp_path, top='allow_unavailable = ["spf", "reputaton"]',
                  extra=ldap_section("ldap://127.0.0.1:9"))
    check = cli("serve", "--check", "-c", cfg)
    assert check.returncode == 2
    golden("allow_unavailable_typo", check.stdout + check.stderr, tmp_path)


def test_ldap_configuration_mistakes(tmp_path: Path) -> None:
    cfg = gateway(tmp_path, extra="""[ldap]
group_query = "hr"
[ldap.corp]
url = "http://ldap.example.org"
base = "dc=example,dc=org"
filter = "(&(cn={g})(mail={email})"
bind_password = "x"
[ldap.people]
url = "ldaps://ldap.example.org:636"
base = "dc=example,dc=org"
filter = "(mail={a}"
bind_dn = "cn=gw"
bind_password = "x"
bind_password_file = "missing.secret"
[incoming_policies.eng]
recipients = ["people.ldapgroup: engineers", "nobody.ldapgroup: x"]
""")
    check = cli("serve", "--check", "-c", cfg)
    assert check.returncode == 2
    golden("ldap_config_errors", check.stdout + check.stderr, tmp_path)


ANSWERS = """\
ldap = {engineers = ["alice@b.example"]}
dnslist = {"bl.example" = "127.0.0.2"}
reputation = -7.5
authentication = {spf = "Fail"}
"""


def test_services_replays_recorded_answers(tmp_path: Path) -> None:
    """The configured directory is not there (port 9): the recorded answers stand in, and
    the trace shows them; JSON works as TOML does; a mistake in the file is one error."""
    cfg = gateway(tmp_path, extra=ldap_section("ldap://127.0.0.1:9")
                  + '[authentication]\nauthserv_id = "mx.b.example"\n'
                  + '[dns]\nreputation_zone = "rep.example"\n')
    (tmp_path / "answers.toml").write_text(ANSWERS)
    out = cli("test", "-c", cfg, "--services", tmp_path / "answers.toml", "--rcpt",
              "alice@b.example", tmp_path / "m.eml")
    assert out.returncode == 0, out.stderr
    golden("replay_trace", out.stdout, tmp_path)
    (tmp_path / "answers.json").write_text(json.dumps(
        {"ldap": {"engineers": []}, "authentication": {"spf": "Pass"}}))
    out = cli("test", "-c", cfg, "--services", tmp_path / "answers.json", "--rcpt",
              "alice@b.example", "--json", tmp_path / "m.eml")
    trace = json.loads(out.stdout)
    assert trace["recipients"] == {"alice@b.example": "deliver"}, trace
    assert [f["name"] for f in trace["filters"] if f["matched"]] == [], trace
    # Without -c too: the filters and the recorded answers alone.
    out = cli("test", tmp_path / "route.filter", tmp_path / "m.eml", "--rcpt",
              "alice@b.example", "--services", tmp_path / "answers.toml")
    assert "engineers_host: matched" in out.stdout and "listed: matched" in out.stdout, out.stdout
    (tmp_path / "bad.toml").write_text('ldapp = {engineers = []}\nreputation = 20\n')
    out = cli("test", "-c", cfg, "--services", tmp_path / "bad.toml", tmp_path / "m.eml")
    assert out.returncode == 2
    golden("replay_bad_file", out.stderr, tmp_path)


def test_suites_take_recorded_services(tmp_path: Path) -> None:
    cfg = gateway(tmp_path, extra=ldap_section("ldap://127.0.0.1:9"),
                  top='allow_unavailable = ["spf", "reputation"]')
    (tmp_path / "answers.toml").write_text(ANSWERS)
    (tmp_path / "suite.toml").write_text(f"""config = "{cfg.name}"
[[case]]
name = "an engineer, from the recorded file"
rcpt = ["alice@b.example"]
raw = "Subject: x\\n\\nx\\n"
services = "answers.toml"
[case.expect]
matched = ["engineers_host", "spf_fail", "listed"]
[[case]]
name = "not an engineer, inline"
rcpt = ["carol@b.example"]
raw = "Subject: x\\n\\nx\\n"
services = {{ldap = {{engineers = ["alice@b.example"]}}}}
[case.expect]
not_matched = ["engineers_host"]
""")
    (tmp_path / "filters.toml").write_text("""filters = ["route.filter"]
[[case]]
name = "listed, recorded"
raw = "Subject: x\\n\\nx\\n"
services = {dnslist = {"bl.example" = "127.0.0.2"}, reputation = -6}
[case.expect]
matched = ["spf_fail", "listed"]
""")
    out = cli("test", "--suite", tmp_path / "suite.toml", tmp_path / "filters.toml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed, 0 failed" in out.stdout
    (tmp_path / "typo.toml").write_text("""filters = ["route.filter"]
[[case]]
name = "typo"
raw = "Subject: x\\n\\nx\\n"
services = {dnslst = {}}
""")
    out = cli("test", "--suite", tmp_path / "typo.toml")
    assert out.returncode == 2
    golden("suite_services_typo", out.stderr, tmp_path)


def test_test_c_shows_what_the_directory_answered(tmp_path: Path, slapd: Slapd) -> None:
    cfg = gateway(tmp_path, extra=ldap_section(slapd.url),
                  top='allow_unavailable = ["spf", "reputation"]')
    out = cli("test", "-c", cfg, "--rcpt", "alice@b.example", "--rcpt", "carol@b.example",
              "--json", tmp_path / "m.eml")
    trace = json.loads(out.stdout)
    flow = next(r for r in trace["stages"] if r["stage"] == "mail_flow_policy")
    assert flow["services"]["ldap"] == {"alice@b.example in engineers (corp)": True,
                                        "carol@b.example in engineers (corp)": False}, flow
    rules = [r for f in trace["filters"] for r in f["rules"]]
    assert {"rule": "rcpt-to-group == 'engineers'", "value": True,
            "note": "ldap corp: alice@b.example in engineers; carol@b.example not in engineers"
            } in rules, rules


@pytest.mark.timeout(60)
def test_test_c_with_the_directory_down_is_a_tempfail(tmp_path: Path) -> None:
    cfg = gateway(tmp_path, extra=ldap_section(f"ldap://127.0.0.1:{free_port()}"),
                  top='allow_unavailable = ["spf", "reputation"]')
    out = cli("test", "-c", cfg, "--rcpt", "alice@b.example", tmp_path / "m.eml")
    assert out.returncode == 0, out.stderr
    assert "alice@b.example: tempfail" in out.stdout, out.stdout
    assert "did not answer" in out.stdout, out.stdout


SCAN_FILTERS = """\
spam_tag: if spam-verdict == 'spam' and spam-score > 5 {
    insert-header('X-Spam-Seen', '$SpamScore');
}
virus_drop: if virus-verdict == 'infected' {
    insert-header('X-Virus-Seen', '$VirusName');
}
"""


def test_scanner_rules_need_their_scanners_and_replay_recorded_verdicts(tmp_path: Path) -> None:
    """spam-verdict and virus-verdict without [antispam] / [antivirus] are F407 like any rule
    whose provider is missing; recorded verdicts (`scanning` in --services) reach the content
    filter that tests them."""
    cfg = gateway(tmp_path)
    (tmp_path / "scan.filter").write_text(SCAN_FILTERS)
    with cfg.open("a") as out:
        out.write('[incoming_policies.everyone]\nrecipients = ["@b.example"]\n'
                  'content_filters = ["scan.filter"]\n')
    lint = cli("lint", "--config", cfg, tmp_path / "scan.filter")
    assert lint.returncode == 1
    assert "'spam-verdict' needs the antispam provider" in lint.stdout + lint.stderr
    assert "'virus-verdict' needs the antivirus provider" in lint.stdout + lint.stderr
    (tmp_path / "answers.toml").write_text(
        'scanning = {spam = "spam", spam_score = 12.5, virus = "infected", '
        'virus_name = "Eicar-Test"}\n')
    out = cli("test", tmp_path / "scan.filter", tmp_path / "m.eml", "--rcpt", "alice@b.example",
              "--services", tmp_path / "answers.toml", "--json")
    assert out.returncode == 0, out.stderr
    trace = json.loads(out.stdout)
    assert {f["name"] for f in trace["filters"] if f["matched"]} == {"spam_tag", "virus_drop"}
    (tmp_path / "bad.toml").write_text('scanning = {spam_scor = 3}\n')
    out = cli("test", tmp_path / "scan.filter", tmp_path / "m.eml", "--services",
              tmp_path / "bad.toml")
    assert out.returncode == 2 and "scanning.spam_scor: unknown key" in out.stderr, out.stderr
