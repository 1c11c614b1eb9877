"""`filterlang lint --config`: filters checked against a gateway configuration's names (F405).

Each case runs the command from `golden/config/` and compares the exit status, standard output
and standard error with `golden/config/<case>.expected` (absolute paths written relative to that
directory). Regenerate with `pytest --update-golden` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.commands.cli import main
from runtime.commands.lint import CONFIG_ENV

HERE = Path(__file__).resolve().parent / "golden" / "config"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"

# (case, arguments after `filterlang`, $FILTERLANG_CONFIG or None)
CASES = [
    ("example_config_clean", ["lint", "--config", "{example}", "names.filter"], None),
    ("missing_quarantine_and_profile", ["lint", "--config", "missing.toml", "names.filter"], None),
    ("missing_json", ["lint", "--json", "--config", "missing.toml", "names.filter"], None),
    ("example_config_unknown_names", ["lint", "--config", "{example}", "unknown_names.filter"],
     None),
    ("no_config_skips_names", ["lint", "unknown_names.filter"], None),
    ("env_config", ["lint", "names.filter"], "missing.toml"),
    ("option_beats_env", ["lint", "--config", "{example}", "names.filter"], "bad_syntax.toml"),
    ("bad_syntax", ["lint", "--config", "bad_syntax.toml", "names.filter"], None),
    ("bad_schema", ["lint", "--config", "bad_schema.toml", "names.filter"], None),
    ("config_not_found", ["lint", "--config", "absent.toml", "names.filter"], None),
    ("env_bad_config", ["lint", "names.filter"], "bad_schema.toml"),
]


def _run(
    args: list[str], env: str | None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    monkeypatch.chdir(HERE)
    if env is None:
        monkeypatch.delenv(CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(CONFIG_ENV, env)
    argv = [a.format(example=EXAMPLE) for a in args]
    status = main(argv)
    out, err = capsys.readouterr()
    shown = " ".join(a.replace(str(EXAMPLE), "examples/gateway.toml") for a in argv)
    prefix = f"{CONFIG_ENV}={env} " if env else ""
    text = f"$ {prefix}filterlang {shown}\nexit {status}\n--- stdout\n{out}--- stderr\n{err}"
    return text.replace(str(EXAMPLE), "examples/gateway.toml").replace(f"{HERE}/", "")


@pytest.mark.parametrize(("case", "args", "env"), CASES, ids=[c[0] for c in CASES])
def test_lint_config_golden(
    case: str, args: list[str], env: str | None, update_golden: bool,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    actual = _run(args, env, monkeypatch, capsys)
    expected_file = HERE / f"{case}.expected"
    if update_golden or not expected_file.exists():
        expected_file.write_text(actual, encoding="utf-8")
        if not update_golden:
            raise AssertionError(f"{expected_file.name} was missing; written, please review it")
        return
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("status", "cases"),
    [
        (0, ["example_config_clean", "no_config_skips_names", "option_beats_env"]),
        (1, ["missing_quarantine_and_profile", "env_config", "example_config_unknown_names"]),
        (2, ["bad_syntax", "bad_schema", "config_not_found", "env_bad_config"]),
    ],
)
def test_exit_status(status: int, cases: list[str]) -> None:
    # The golden files hold the status too; this states the contract in one place.
    for case in cases:
        text = (HERE / f"{case}.expected").read_text(encoding="utf-8")
        assert text.splitlines()[1] == f"exit {status}", case


def test_unreadable_config_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "binary.toml"
    config.write_bytes(b"\xff\xfe\x00junk")
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert main(["lint", "--config", str(config), str(HERE / "names.filter")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"filterlang lint: configuration error: {config}: (syntax): invalid UTF-8 byte at "
        "offset 0; save the file as UTF-8\n"
    )
