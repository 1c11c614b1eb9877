"""Every diagnostic code, one row each: the single source for the linter, the docs and tests.

Ranges: F1xx syntax (parser), F2xx names and signatures, F3xx argument values, F4xx filter
structure, W5xx warnings, N6xx notes. Codes are stable: never renumber or reuse one.
"""

from __future__ import annotations

from attrs import frozen

from filterlang.diagnostics import Severity


@frozen
class Code:
    """A diagnostic code with its default severity, a title, and a bad and fixed example."""

    code: str
    severity: Severity
    title: str
    bad: str = ""
    fixed: str = ""


E, W, N = Severity.ERROR, Severity.WARNING, Severity.NOTE

# --- F1xx: syntax (owned by the parser) --------------------------------------------------
_SYNTAX = (
    Code(
        "F101",
        E,
        "syntax error: unexpected token",
        bad="too_big:\n    if body-size >= 10M {\n        drop;\n    }\n",
        fixed="too_big:\n    if body-size >= 10M {\n        drop();\n    }\n",
    ),
    Code(
        "F102",
        E,
        "unterminated string",
        bad="tell:\n    if signed {\n        notify(\"admin@example.com');\n    }\n",
        fixed="tell:\n    if signed {\n        notify('admin@example.com');\n    }\n",
    ),
    Code(
        "F103",
        E,
        "comments must start a line",
        bad="mark:\n    if signed {  # stamp it\n        insert-header('X-Signed', 'yes');\n    }\n",
        fixed="# stamp it\nmark:\n    if signed {\n        insert-header('X-Signed', 'yes');\n    }\n",
    ),
    Code(
        "F104",
        E,
        "unexpected end of file",
        bad="tag:\n    if subject ==\n",
        fixed="tag:\n    if subject == '^Re:' {\n        no-op();\n    }\n",
    ),
    Code(
        "F105",
        E,
        "empty block",
        bad="nothing:\n    if signed {\n    }\n",
        fixed="nothing:\n    if signed {\n        no-op();\n    }\n",
    ),
    Code(
        "F106",
        E,
        "'else if' is not part of the language",
        bad=(
            "spf:\n    if spf-status == 'Fail' {\n        quarantine('SPF');\n"
            "    } else if spf-status == 'SoftFail' {\n        insert-header('X-SPF', 'soft');\n"
            "    }\n"
        ),
        fixed=(
            "spf:\n    if spf-status == 'Fail' {\n        quarantine('SPF');\n    } else {\n"
            "        if spf-status == 'SoftFail' {\n"
            "            insert-header('X-SPF', 'soft');\n        }\n    }\n"
        ),
    ),
    Code(
        "F107",
        E,
        "unreadable source (invalid UTF-8, NUL or binary data)",
        # Raw bytes cannot be shown in a str: the bad example describes the file instead.
        bad="(a file saved as Latin-1: the subject value 'café' holds the single byte 0xE9)",
        fixed="latin1:\n    if subject == 'café' {\n        no-op();\n    }\n",
    ),
    Code(
        "F108",
        E,
        "nesting deeper than 64 levels",
        bad="deep:\n    if " + "(" * 65 + "signed" + ")" * 65 + " {\n        no-op();\n    }\n",
        fixed="deep:\n    if signed {\n        no-op();\n    }\n",
    ),
    Code(
        "F109",
        E,
        "invalid filter name",
        bad="1st.filter:\n    if signed {\n        no-op();\n    }\n",
        fixed="first_filter:\n    if signed {\n        no-op();\n    }\n",
    ),
    Code(
        "F110",
        E,
        "'=' where '==' was meant",
        bad="spam:\n    if subject = '^\\\\[SPAM\\\\]' {\n        quarantine('Spam');\n    }\n",
        fixed="spam:\n    if subject == '^\\\\[SPAM\\\\]' {\n        quarantine('Spam');\n    }\n",
    ),
    Code(
        "F111",
        E,
        "unquoted value",
        bad="hold:\n    if remote-ip == 10.1.1.0/24 {\n        quarantine(Policy);\n    }\n",
        fixed="hold:\n    if remote-ip == '10.1.1.0/24' {\n        quarantine('Policy');\n    }\n",
    ),
    Code(
        "F112",
        E,
        "missing ';' after an action",
        bad="big:\n    if body-size > 10M {\n        notify('postmaster@example.com')\n"
        "        drop();\n    }\n",
        fixed="big:\n    if body-size > 10M {\n        notify('postmaster@example.com');\n"
        "        drop();\n    }\n",
    ),
    Code(
        "F113",
        E,
        "missing '}' to close a block",
        bad="big:\n    if body-size > 10M {\n        drop();\n\nnext:\n    if signed {\n"
        "        no-op();\n    }\n",
        fixed="big:\n    if body-size > 10M {\n        drop();\n    }\n\nnext:\n    if signed {\n"
        "        no-op();\n    }\n",
    ),    # The bad example (1001 arguments) is built in test_robust: too long for the docs.
    Code(
        "F114",
        E,
        "more than 1000 arguments in one call",
        fixed="tag:\n    if signed {\n        insert-header('X-Signed', 'yes');\n    }\n",
    ),
    Code(
        "F115",
        E,
        "typographic character from pasted text",
        bad="big:\n    if body\u2013size > 10M {\n        drop();\n    }\n",
        fixed="big:\n    if body-size > 10M {\n        drop();\n    }\n",
    ),
)

# --- F2xx: names and signatures (owned by the checker) ------------------------------------
_NAMES = (
    Code(
        "F201",
        E,
        "unknown rule",
        bad="f: if subjct == 'x' { drop(); }",
        fixed="f: if subject == 'x' { drop(); }",
    ),
    Code(
        "F202",
        E,
        "wrong number of arguments",
        bad="f: if true { insert-header('X-A'); }",
        fixed="f: if true { insert-header('X-A', 'yes'); }",
    ),
    Code(
        "F203",
        E,
        "wrong argument type",
        bad="f: if random('ten') { drop(); }",
        fixed='f: if random(10) { drop(); }',
    ),
    Code(
        "F204",
        E,
        "unknown action",
        bad="f: if true { quarantin('Policy'); }",
        fixed="f: if true { quarantine('Policy'); }",
    ),
    Code(
        "F205",
        E,
        "comparator not allowed for this rule",
        bad="f: if subject > 'x' { drop(); }",
        fixed="f: if subject == 'x' { drop(); }",
    ),
    Code(
        "F206",
        E,
        "rule needs a comparison",
        bad='f: if mail-from { drop(); }',
        fixed="f: if mail-from == '@example\\\\.com$' { drop(); }",
    ),
    Code(
        "F207",
        E,
        "action or rule not allowed in this kind of filter",
        bad='content-filter cf: direction incoming if rcpt-count > 5 { drop(); }',
        fixed='f: if rcpt-count > 5 { drop(); }',
    ),
    Code(
        "F208",
        E,
        "duplicate filter name",
        bad='a: if true { no-op(); }\nA: if true { no-op(); }',
        fixed='a: if true { no-op(); }\nb: if true { no-op(); }',
    ),
    Code(
        "F209",
        E,
        "unknown action variable",
        bad="f: if true { log-entry('$Sender'); }",
        fixed="f: if true { log-entry('$EnvelopeFrom'); }",
    ),
    Code(
        "F210",
        E,
        "filter name is a reserved word",
        bad='subject: if true { no-op(); }',
        fixed='subject_check: if true { no-op(); }',
    ),
)

# --- F3xx: argument values -----------------------------------------------------------------
_VALUES = (
    Code(
        "F301",
        E,
        "invalid regular expression",
        bad="f: if subject == '[abc' { drop(); }",
        fixed="f: if subject == '\\\\[abc' { drop(); }",
    ),
    Code(
        "F302",
        E,
        "regular expression construct not supported by the linear-time engine",
        bad="f: if subject == '(a)\\\\1' { drop(); }",
        fixed="f: if subject == '(aa)' { drop(); }",
    ),
    Code(
        "F303",
        E,
        "invalid size",
        bad="f: if body-size > 'big' { drop(); }",
        fixed='f: if body-size > 10M { drop(); }',
    ),
    Code(
        "F304",
        E,
        "invalid date",
        bad="f: if date > '13/45/2003' { drop(); }",
        fixed="f: if date > '07/28/2003' { drop(); }",
    ),
    Code(
        "F305",
        E,
        "invalid IP address specification",
        bad="f: if remote-ip == '10.1.1.300' { drop(); }",
        fixed="f: if remote-ip == '10.1.1.0/24' { drop(); }",
    ),
    Code(
        "F306",
        E,
        "number out of range",
        bad="f: if true { url-no-reputation-defang('', 2); }",
        fixed="f: if true { url-no-reputation-defang('', 1); }",
    ),
    Code(
        "F307",
        E,
        "invalid e-mail address",
        bad="f: if true { alt-rcpt-to('a@@example.com'); }",
        fixed="f: if true { alt-rcpt-to('a@example.com'); }",
    ),
    Code(
        "F308",
        E,
        "invalid header name",
        bad="f: if true { insert-header('X Scanned:', 'yes'); }",
        fixed="f: if true { insert-header('X-Scanned', 'yes'); }",
    ),
    # No example: one would be thousands of characters long. Use a dictionary rule instead.
    Code("F309", E, "regular expression over a cap: more than 4096 characters or more than "
         "1000 alternatives"),
)

# --- F4xx: filter structure ------------------------------------------------------------------
_STRUCTURE = (
    Code(
        "F401",
        E,
        "action after a final action is never reached",
        bad="f: if true { drop(); bcc('a@example.com'); }",
        fixed="f: if true { bcc('a@example.com'); drop(); }",
    ),
    Code(
        "F402",
        E,
        "more than one final action in a content filter",
        bad='content-filter cf: direction incoming if true { drop(); bounce(); }',
        fixed='content-filter cf: direction incoming if true { drop(); }',
    ),
    Code(
        "F403",
        E,
        "final action must be last in a content filter",
        bad="content-filter cf: direction incoming if true { drop(); tag-message('x'); }",
        fixed="content-filter cf: direction incoming if true { tag-message('x'); drop(); }",
    ),
    Code(
        "F404",
        E,
        "content filter conditions must be a flat list",
        bad="content-filter cf: direction incoming if subject == 'a' or encrypted { drop(); }",
        fixed="content-filter cf: direction incoming apply any if subject == 'a' or subject == 'b' { drop(); }",
    ),
    Code(
        "F405",
        E,
        "unknown resource name",
        bad="f: if true { quarantine('Polcy'); }",
        fixed="f: if true { quarantine('Policy'); }",
    ),
    # No example, as for F309: split the filter, or match a dictionary.
    Code("F406", E, "more than 500 rules in one filter"),
    Code(
        "F407",
        E,
        "rule needs an outside provider the configuration does not define",
        bad="f: if rcpt-to-group == 'engineers' { no-op(); }",
        fixed="f: if rcpt-to == '@engineering' { no-op(); }",
    ),
)

# --- W5xx: warnings --------------------------------------------------------------------------
_WARNINGS = (
    Code(
        "W501",
        W,
        "'and' and 'or' mixed without parentheses",
        bad="f: if subject == 'a' or subject == 'b' and encrypted { drop(); }",
        fixed="f: if subject == 'a' or (subject == 'b' and encrypted) { drop(); }",
    ),
    Code(
        "W502",
        W,
        "single backslash in a regular expression",
        bad="f: if subject == '\\.exe' { drop(); }",
        fixed="f: if subject == '\\\\.exe' { drop(); }",
    ),
    Code(
        "W503",
        W,
        "older spelling of a rule or action (deprecated alias)",
        bad="f: if true { drop_attachments('x'); }",
        fixed="f: if true { drop-attachments-by-name('x'); }",
    ),
    Code(
        "W504",
        W,
        "rule needs an outside provider that is not configured (allowed by allow_unavailable)",
        bad='f: if spf-passed { no-op(); }',
        fixed="f: if subject == 'x' { no-op(); }",
    ),
    Code(
        "W505",
        W,
        "backtracking regular-expression engine enabled",
        bad='# filterlang: regex-engine=backtracking',
        fixed='',
    ),
    Code(
        "W506",
        W,
        "scan verdict read in a message filter (the scanners run after them)",
        bad="f: if spam-verdict == 'spam' { drop(); }",
        # (The fix is a content filter reading the verdict, which needs [antispam] configured.)
        fixed="",
    ),
)

# --- N6xx: notes -----------------------------------------------------------------------------
_NOTES = (Code(
        "N601",
        N,
        "'!=' on a rule with several values",
        bad="f: if rcpt-to != '@example\\\\.com$' { no-op(); }",
        fixed="f: if not (rcpt-to == '@example\\\\.com$') { no-op(); }",
    ),
    # No examples: showing it takes more than 200 broken filters.
    Code("N602", N, "too many diagnostics in one file; the rest are not shown"),
    Code(
        "N603",
        N,
        "'.' line (the end of CLI input) in a filter file",
        bad="f: if true { no-op(); }\n.\n",
        fixed="f: if true { no-op(); }\n",
    ),
)

CODES: dict[str, Code] = {
    c.code: c for c in (*_SYNTAX, *_NAMES, *_VALUES, *_STRUCTURE, *_WARNINGS, *_NOTES)
}
