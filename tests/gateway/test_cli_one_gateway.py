"""Issue 15 items 13-17 through the real command line (subprocesses): one gateway for every
administrative command, the same flags and exit codes everywhere, strict files, `test` with a
missing message, and `serve --check`. Error texts are compared with golden files in
golden/cli/ (temporary paths and ports replaced by <tmp> and <port>); FILTERLANG_UPDATE_GOLDEN=1
rewrites them."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.config.names import CONFIG_ENV

FILTERLANG = Path(sys.executable).parent / "filterlang"
GOLDEN = Path(__file__).parent / "golden" / "cli"
ROOT = Path(__file__).resolve().parents[2]
MSG = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nlunch at noon?\r\n"
FILTER = """stamp:
    if subject == 'hello' {
        insert-header('X-Stamped', 'yes');
    }
"""


def cli(*args: str | Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    return subprocess.run([str(FILTERLANG), *map(str, args)], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=cwd, timeout=120)


def golden(name: str, text: str, tmp: Path, port: int | None = None) -> None:
    text = text.replace(str(tmp.resolve()), "<tmp>").replace(str(tmp), "<tmp>")
    if port is not None:
        text = re.sub(rf"\b{port}\b", "<port>", text)
    text = re.sub(r"uid \d+", "uid <uid>", text)
    text = re.sub(r"/\S*/pytest-\d+/[^/\s]+", "<tmp>", text)  # module-scoped folders
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("FILTERLANG_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gw(tmp_path: Path) -> Path:
    """A gateway.toml with its own data folder, a quarantine, a profile and a filter."""
    (tmp_path / "stamp.filter").write_text(FILTER)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""message_filters = ["stamp.filter"]
local_domains = ["example.org"]
[storage]
data_dir = "data"
[[listeners]]
name = "Inbound"
port = {free_port()}
[quarantines.Policy]
[profiles.enc]
mode = "encrypt"
[delivery]
maildir = "maildir"
""")
    return cfg


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate and key made by `filterlang cert create` (PREFIX.crt.pem, PREFIX.key.pem)."""
    out = tmp_path_factory.mktemp("certs") / "bob"
    proc = cli("cert", "create", "--cn", "example.org", "--san-email", "bob@example.org",
               "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


# --- item 13: one gateway --------------------------------------------------------------------

READERS = [["keys", "lookup", "bob@example.org"], ["queue", "list"], ["quarantine", "list"],
           ["profiles", "list"], ["serve", "--check"]]


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_without_a_configuration_commands_refuse_naming_c(tmp_path: Path, command: list[str]) -> None:
    proc = cli(*command, cwd=tmp_path)
    assert proc.returncode == 2
    assert "give -c gateway.toml" in proc.stderr and f"${CONFIG_ENV}" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created: no ./var/keys.db
    if command[0] == "keys":
        golden("no_config_keys", proc.stderr, tmp_path)


def test_reads_create_no_store(gw: Path) -> None:
    data = gw.parent / "data"
    proc = cli("keys", "-c", gw, "lookup", "bob@example.org")
    assert proc.returncode == 2
    golden("keys_no_store", proc.stderr, gw.parent)
    for command in (["queue", "list"], ["quarantine", "list", "Policy"], ["keys", "list"]):
        assert cli(command[0], "-c", gw, *command[1:]).returncode in (0, 2)
    assert not data.exists(), "a read created the gateway's data folder"


def test_keys_use_the_configurations_store(gw: Path, identity: Path) -> None:
    env = {CONFIG_ENV: str(gw)}
    add = cli("keys", "add", "bob", f"{identity}.crt.pem", env=env)
    assert add.returncode == 0, add.stderr
    assert (gw.parent / "data" / "keys.sqlite3").exists()  # storage.keystore_url's default
    found = cli("keys", "-c", gw, "lookup", "bob@example.org")
    assert found.returncode == 0 and found.stdout.startswith("bob:"), found.stderr
    # -c after the action too, and --json there
    listed = cli("keys", "list", "-c", gw, "--json")
    assert [k["name"] for k in json.loads(listed.stdout)] == ["bob"]
    assert cli("keys", "-c", gw, "lookup", "nobody@example.net").returncode == 1


def test_queue_quarantine_profiles_take_the_configuration_from_the_environment(gw: Path) -> None:
    env = {CONFIG_ENV: str(gw)}
    assert json.loads(cli("queue", "list", "--json", env=env).stdout) == []
    assert json.loads(cli("quarantine", "--json", "list", env=env).stdout) == {"Policy": 0}
    profiles = json.loads(cli("profiles", "list", "--json", env=env).stdout)
    assert [p["name"] for p in profiles] == ["enc"]


def test_lint_checks_names_against_the_configuration(gw: Path) -> None:
    bad = gw.parent / "bad.filter"
    bad.write_text("park:\n    if subject == 'x' {\n        quarantine('Polcy');\n    }\n")
    assert cli("lint", bad).returncode == 0  # no configuration: names are not checked
    for proc in (cli("lint", "-c", gw, bad), cli("lint", bad, env={CONFIG_ENV: str(gw)})):
        assert proc.returncode == 1
        assert "Polcy" in proc.stdout and "F405" in proc.stdout


def test_test_runs_the_configured_gateway_from_the_environment(gw: Path) -> None:
    msg = gw.parent / "m.eml"
    msg.write_bytes(MSG)
    proc = cli("test", msg, "--json", "--rcpt", "b@example.org", env={CONFIG_ENV: str(gw)})
    assert proc.returncode == 0, proc.stderr
    trace = json.loads(proc.stdout)
    assert "X-Stamped" in json.dumps(trace)  # the configuration's message filter ran


# --- item 14: the same flags and exit codes ---------------------------------------------------


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and re.fullmatch(r"filterlang \S+\n", proc.stdout)


def test_help_lists_the_exit_codes() -> None:
    from runtime.commands.cli import _parser

    for args in ([], ["keys"]):
        proc = cli(*args, "--help")
        assert proc.returncode == 0
        text = " ".join(proc.stdout.split())
        assert "exit status: 0 done; 1 problems found or not verified" in text
        assert "2 usage or configuration error" in text
    # and every command's own --help, without a process each
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        epilog = sub.epilog or ""
        assert epilog.startswith("exit status: 0 done; 1 problems found or not verified"), name
        assert "2 usage or configuration error" in epilog, name


def test_usage_errors_exit_2() -> None:
    assert cli("lint", "--no-such-flag", "x").returncode == 2
    assert cli("queue").returncode == 2


def test_json_everywhere(gw: Path, tmp_path: Path) -> None:
    msg = tmp_path / "m.eml"
    msg.write_bytes(MSG)
    filt = gw.parent / "stamp.filter"
    for args in (["lint", "--json", filt], ["fmt", "--check", "--json", filt],
                 ["test", "--json", filt, msg], ["queue", "-c", gw, "--json", "list"],
                 ["quarantine", "-c", gw, "--json", "list"],
                 ["profiles", "-c", gw, "--json", "show", "enc"],
                 ["serve", "--check", "--json", "-c", gw]):
        proc = cli(*args)
        assert proc.returncode in (0, 2), (args, proc.stderr)
        json.loads(proc.stdout.splitlines()[0] if args[0] == "test" else proc.stdout)


@pytest.mark.parametrize("flag", ["-o", "--out", "--output"])
def test_out_means_where_results_go(tmp_path: Path, flag: str) -> None:
    (tmp_path / "f.filter").write_text(FILTER)
    (tmp_path / "m.eml").write_bytes(MSG)
    proc = cli("test", tmp_path / "f.filter", tmp_path / "m.eml", flag, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert b"X-Stamped: yes" in (tmp_path / "out" / "m.eml").read_bytes()


def test_times_are_iso_8601(gw: Path, identity: Path) -> None:
    env = {CONFIG_ENV: str(gw)}
    assert cli("keys", "add", "bob", f"{identity}.crt.pem", env=env).returncode == 0
    key = json.loads(cli("keys", "--json", "show", "bob", env=env).stdout)
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    for field in ("not_before", "not_after", "first_seen", "last_seen"):
        assert iso.fullmatch(key[field]), (field, key[field])
    audit = cli("keys", "audit", env=env).stdout
    assert iso.match(audit), audit
    assert cli("keys", "list", "--expires-before", "2000-01-01", env=env).stdout == ""
    assert "bob" in cli("keys", "list", "--expires-before", "2999-01-01", env=env).stdout
    bad = cli("keys", "list", "--expires-before", "1700000000", env=env)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


def test_queue_list_shows_the_next_attempt_as_iso(gw: Path) -> None:
    from runtime.config.config import load_config
    from runtime.mta.spool import Envelope
    from runtime.mta.supervisor import spool_for

    spool = spool_for(load_config(gw))
    qid = spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    spool.move(qid, "incoming", "deferred")
    out = cli("queue", "-c", gw, "list").stdout
    assert re.search(r"\tnext=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\t", out), out


# --- item 15: strict files -------------------------------------------------------------------


def _suite(tmp_path: Path, expect: str, extra: str = "") -> Path:
    (tmp_path / "f.filter").write_text(FILTER)
    (tmp_path / "m.eml").write_bytes(MSG)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'filters = ["f.filter"]\n{extra}\n[[case]]\nname = "hello"\n'
                     f'message = "m.eml"\n[case.expect]\n{expect}\n')
    return suite


@pytest.mark.parametrize(("name", "expect", "extra"), [
    ("suite_expect_typo", 'matchd = ["stamp"]', ""),
    ("suite_case_typo", 'matched = ["stamp"]\n', ""),
    ("suite_top_typo", 'matched = ["stamp"]', "filter = []"),
    ("suite_resources_typo", 'matched = ["stamp"]', '[resources.text_resource]\nfoot = "x"'),
    ("suite_policies_typo", 'matched = ["stamp"]',
     '[[incoming_policies]]\nname = "p"\nrecipient = ["b@"]'),
])
def test_a_typo_in_a_suite_is_an_error_naming_the_nearest_key(
        tmp_path: Path, name: str, expect: str, extra: str) -> None:
    suite = _suite(tmp_path, expect, extra)
    if name == "suite_case_typo":
        suite.write_text(suite.read_text().replace('message = "m.eml"', 'message = "m.eml"\nmail_form = "x@y"'))
    proc = cli("test", "--suite", suite)
    assert proc.returncode == 2 and "passed" not in proc.stdout
    golden(name, proc.stderr, tmp_path)


def test_a_config_suite_refuses_what_the_configuration_decides(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text('config = "gateway.toml"\n[resources.text_resources]\nfoot = "x"\n'
                     '[[case]]\nname = "c"\nraw = "Subject: x"\ndirection = "outgoing"\n'
                     '[case.expect]\nfinal = "none"\n')
    proc = cli("test", "--suite", suite)
    assert proc.returncode == 2
    golden("config_suite_keys", proc.stderr, tmp_path)


def test_a_typo_in_resources_and_policies_files(tmp_path: Path) -> None:
    (tmp_path / "f.filter").write_text(FILTER)
    (tmp_path / "m.eml").write_bytes(MSG)
    res = tmp_path / "res.toml"
    res.write_text('[dictionaries.Words]\nfile = "w.txt"\nwhole_word = true\n')
    pol = tmp_path / "pol.toml"
    pol.write_text('[[incoming_policies]]\nname = "sales"\nrecipients = ["jim@"]\ncontent_filter = []\n')
    out = []
    for flag, path in (("--resources", res), ("--policies", pol)):
        proc = cli("test", tmp_path / "f.filter", tmp_path / "m.eml", flag, path)
        assert proc.returncode == 2
        out.append(proc.stderr)
    golden("resources_and_policies_typo", "".join(out), tmp_path)


def test_a_typo_in_gateway_toml_and_profiles_file(gw: Path) -> None:
    text = gw.read_text().replace("data_dir", "data_dri") + 'profiles_file = "p.toml"\n'
    # profiles_file is a top-level key: put it before the first section
    gw.write_text('profiles_file = "p.toml"\n' + text.replace('profiles_file = "p.toml"\n', ""))
    (gw.parent / "p.toml").write_text('[profiles.more]\nmode = "encrypt"\nmissing_key_acton = "drop"\n')
    results = [cli(*args) for args in (["serve", "--check", "-c", gw], ["queue", "-c", gw, "list"],
                                       ["keys", "-c", gw, "list"], ["test", "-c", gw, gw])]
    assert [r.returncode for r in results] == [2, 2, 2, 2]
    assert "did you mean 'data_dir'?" in results[1].stderr
    assert "did you mean 'missing_key_action'?" in results[2].stderr
    golden("gateway_toml_typo", results[0].stderr, gw.parent)


def test_suites_assert_the_resulting_body_and_headers(tmp_path: Path) -> None:
    (tmp_path / "body.txt").write_text("lunch at noon?\n")
    (tmp_path / "other.txt").write_text("dinner\n")
    good = _suite(tmp_path, 'body_contains = ["noon"]\nbody_not_contains = ["midnight"]\n'
                            'body_equals = "body.txt"\nheaders = {"X-Stamped" = "^yes$"}\n'
                            'headers_present = ["X-Stamped"]')
    proc = cli("test", "--suite", good)
    assert proc.returncode == 0 and "1 passed, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    bad = _suite(tmp_path, 'body_contains = ["midnight"]\nbody_not_contains = ["noon"]\n'
                           'body_equals = "other.txt"\nheaders = {"X-Stamped" = "^no$"}')
    proc = cli("test", "--suite", bad)
    assert proc.returncode == 1
    for line in ("body: expected to contain 'midnight', it does not",
                 "body: expected not to contain 'noon', it does",
                 "body: expected the contents of other.txt, got 'lunch at noon?\\n'",
                 "header X-Stamped: expected a value matching '^no$', got ['yes']"):
        assert line in proc.stdout, proc.stdout
    missing = _suite(tmp_path, 'body_equals = "nowhere.txt"')
    proc = cli("test", "--suite", missing)
    assert proc.returncode == 2 and "body_equals: no file 'nowhere.txt'" in proc.stderr


def test_old_spellings_still_load_with_a_warning(tmp_path: Path) -> None:
    suite = _suite(tmp_path, 'matched = ["stamp"]',
                   '[resources.texts]\nfoot = "x"\n[[policies.incoming]]\nname = "p"')
    proc = cli("test", "--suite", suite)
    assert proc.returncode == 0, proc.stderr
    assert "texts: deprecated spelling; write text_resources" in proc.stderr
    assert "policies: deprecated spelling; write [[incoming_policies]]" in proc.stderr


# --- item 16: test with a missing or unreadable message --------------------------------------


def test_a_missing_message_exits_2_naming_it(gw: Path, tmp_path: Path) -> None:
    filt = gw.parent / "stamp.filter"
    runs = [cli("test", filt, tmp_path / "nope.eml"),
            cli("test", "-c", gw, tmp_path / "nope.eml"),
            cli("test", filt, tmp_path / "nope.msg", "--json")]
    for proc in runs:
        assert proc.returncode == 2 and proc.stdout == ""
        assert "nope." in proc.stderr and "no such file or directory" in proc.stderr
    golden("test_missing_message", runs[0].stderr, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("test", filt, empty)
    assert proc.returncode == 2 and "no .eml files" in proc.stderr
    (tmp_path / "suite.toml").write_text('filters = ["f.filter"]\n[[case]]\nmessage = "gone.eml"\n')
    (tmp_path / "f.filter").write_text(FILTER)
    proc = cli("test", "--suite", tmp_path / "suite.toml")
    assert proc.returncode == 2 and "gone.eml" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_message_exits_2(tmp_path: Path) -> None:
    (tmp_path / "f.filter").write_text(FILTER)
    msg = tmp_path / "m.eml"
    msg.write_bytes(MSG)
    msg.chmod(0)
    proc = cli("test", tmp_path / "f.filter", msg)
    assert proc.returncode == 2 and "m.eml: cannot read" in proc.stderr


# --- item 17: serve --check and start-up failures --------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_serve_check_passes_on_a_good_configuration(gw: Path) -> None:
    proc = cli("serve", "--check", "-c", gw)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    assert not (gw.parent / "data").exists()  # a check creates nothing


def test_serve_check_names_every_problem_by_its_key(gw: Path, identity: Path,
                                                     tmp_path: Path, busy_port: int) -> None:
    other = tmp_path / "other"
    assert cli("cert", "create", "--cn", "other.example", "-o", other).returncode == 0
    (tmp_path / "afile").write_text("")
    text = gw.read_text()
    text = re.sub(r"port = \d+", f"port = {busy_port}", text)
    text = text.replace('data_dir = "data"', 'data_dir = "afile/data"\n'
                        'keystore_url = "postgresql://gw@127.0.0.1:1/keys"')
    text += (f'[certificates.org]\ncert = "{identity}.crt.pem"\nkey = "{other}.key.pem"\n'
             f'[metrics]\nport = {busy_port}\n')
    gw.write_text(text)
    proc = cli("serve", "--check", "-c", gw)
    assert proc.returncode == 2
    assert "Errno" not in proc.stderr
    for key in ("listeners[0].port", "metrics.port", "storage.data_dir",
                "storage.keystore_url", "certificates.org.key"):
        assert f": {key}: " in proc.stderr, key
    lines = [line for line in proc.stderr.splitlines() if "keystore_url" not in line]
    golden("serve_check_problems", "\n".join(lines) + "\n", tmp_path, busy_port)
    data = json.loads(cli("serve", "--check", "--json", "-c", gw).stdout)
    assert not data["ok"] and {p["key"] for p in data["problems"]} >= {"listeners[0].port"}


def test_serve_reports_a_port_in_use_by_its_key(gw: Path, busy_port: int) -> None:
    gw.write_text(re.sub(r"port = \d+", f"port = {busy_port}", gw.read_text()))
    proc = cli("serve", "-c", gw)
    assert proc.returncode == 2
    assert "Errno" not in proc.stderr
    assert f"listeners[0].port: 127.0.0.1:{busy_port} is already in use" in proc.stderr


def test_serve_reports_an_unusable_data_dir_by_its_key(gw: Path) -> None:
    (gw.parent / "afile").write_text("")
    gw.write_text(gw.read_text().replace('data_dir = "data"', 'data_dir = "afile/data"'))
    proc = cli("serve", "-c", gw)
    assert proc.returncode == 2
    assert "storage.data_dir: " in proc.stderr and "is a file, not a folder" in proc.stderr
