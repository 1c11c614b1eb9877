"""The LDAP group query provider (runtime.engine.providers.ldap) against a real slapd:
membership by a {g} filter and by the groups an address's entries name, RFC 4515 escaping of
the address, the bounded TTL cache, and a server that does not answer as a temporary failure,
never "not in the group"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.config.config import LdapQuery
from runtime.engine.providers.ldap import Directory, LdapAnswers, LdapUnavailable
from tests.ldap.conftest import GROUPS
from tests.support.slapd import BASE, READER_DN, READER_PW, Slapd, slapd_missing

BY_GROUP = "(&(objectClass=nisMailAlias)(cn={g})(rfc822MailMember={a}))"
BY_ADDRESS = "(&(objectClass=nisMailAlias)(rfc822MailMember={a}))"


def query(url: str, template: str = BY_GROUP, **kw: object) -> LdapQuery:
    opts: dict[str, object] = {"bind_dn": READER_DN, "bind_password": READER_PW,
                               "timeout": 2.0, "attribute": None if "{g}" in template else "cn"}
    opts.update(kw)
    return LdapQuery("corp", url, BASE, template, **opts)  # type: ignore[arg-type]


@pytest.mark.parametrize("template", [BY_GROUP, BY_ADDRESS], ids=["by-group", "by-address"])
def test_membership(slapd: Slapd, template: str) -> None:
    d = Directory(query(slapd.url, template))
    got = d.answers([("alice@b.example", "engineers"), ("BOB@b.example", "Engineers"),
                     ("carol@b.example", "engineers"), ("carol@b.example", "sales"),
                     ("nobody@b.example", "sales"), ("", "sales")])
    assert got == {("alice@b.example", "engineers"): True, ("bob@b.example", "engineers"): True,
                   ("carol@b.example", "engineers"): False, ("carol@b.example", "sales"): True,
                   ("nobody@b.example", "sales"): False}
    d.close()


@pytest.mark.parametrize("template", [BY_GROUP, BY_ADDRESS], ids=["by-group", "by-address"])
def test_the_address_is_escaped(slapd: Slapd, template: str) -> None:
    """RFC 4515: `*` in an address is a character, not a wildcard, and parentheses cannot
    close the filter early; the member whose address really holds them is found."""
    d = Directory(query(slapd.url, template))
    got = d.answers([("*", "engineers"), ("*)(cn=*", "engineers"), ("*@b.example", "sales"),
                     ("we*rd(x)@b.example", "odd")])
    assert got == {("*", "engineers"): False, ("*)(cn=*", "engineers"): False,
                   ("*@b.example", "sales"): False, ("we*rd(x)@b.example", "odd"): True}


def test_a_memberof_dn_counts_by_its_first_value(slapd: Slapd) -> None:
    """With an attribute holding DNs (memberOf), cn=engineers,ou=groups,... is "engineers"."""
    d = Directory(query(slapd.url, "(&(objectClass=nisMailAlias)(rfc822MailMember={a}))",
                        attribute="entryDN"))
    assert d.answers([("alice@b.example", "engineers"), ("alice@b.example", "ou")]) == {
        ("alice@b.example", "engineers"): True, ("alice@b.example", "ou"): False}


def test_a_wrong_password_is_a_temporary_failure(slapd: Slapd) -> None:
    d = Directory(query(slapd.url, bind_password="wrong"))
    with pytest.raises(LdapUnavailable, match="bind as cn=reader,dc=example,dc=org failed"):
        d.answers([("alice@b.example", "engineers")])


def test_outage_cache_and_recovery(tmp_path: Path) -> None:
    """Answers are kept cache_ttl seconds (at most cache_size of them): asked again while the
    server is down, a kept answer is given; one not kept is a temporary failure (never
    False); after the server is back, it answers again."""
    if slapd_missing():
        pytest.skip(slapd_missing() or "")
    now = [1000.0]
    server = Slapd(tmp_path / "slapd", GROUPS).start()
    try:
        d = Directory(query(server.url, cache_ttl=60.0, cache_size=2), clock=lambda: now[0])
        assert d.answers([("alice@b.example", "engineers"), ("carol@b.example", "engineers"),
                          ("carol@b.example", "sales")]) == {
            ("alice@b.example", "engineers"): True, ("carol@b.example", "engineers"): False,
            ("carol@b.example", "sales"): True}
        server.stop()
        # Bounded: of three answers two are kept, the oldest gone.
        assert d.answers([("carol@b.example", "sales")]) == {("carol@b.example", "sales"): True}
        assert d.answers([("carol@b.example", "engineers")]) == {
            ("carol@b.example", "engineers"): False}
        with pytest.raises(LdapUnavailable, match="did not answer"):
            d.answers([("alice@b.example", "engineers")])
        now[0] += 61  # the kept answers expire
        with pytest.raises(LdapUnavailable):
            d.answers([("carol@b.example", "sales")])
        server.start()
        assert d.answers([("alice@b.example", "engineers")]) == {
            ("alice@b.example", "engineers"): True}
    finally:
        server.stop()


def test_answers_read_by_the_rules(slapd: Slapd) -> None:
    """What the rules read: the answers asked beforehand, one asked later through the same
    directory, and a query whose server failed raising, not answering False."""
    d = Directory(query(slapd.url))
    got = asyncio.run(asyncio.to_thread(d.answers, [("alice@b.example", "engineers")]))
    answers = LdapAnswers("corp", {("corp", a, g): hit for (a, g), hit in got.items()},
                          {"down": "LDAP down (ldap://127.0.0.1:1) did not answer"},
                          {"corp": d})
    assert answers.in_group("Alice@B.example", "ENGINEERS")
    assert answers.in_group("bob@b.example", "engineers")  # not asked before: asked now
    assert not answers.in_group("", "engineers")
    assert answers.policy_check("carol@b.example", "corp.ldapgroup: sales")
    with pytest.raises(LdapUnavailable, match="did not answer"):
        answers.policy_check("carol@b.example", "down.ldapgroup: sales")
    assert "is in engineers" in answers.describe("alice@b.example", "engineers")
