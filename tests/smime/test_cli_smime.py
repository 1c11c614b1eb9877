"""`filterlang smime ...` end to end through runtime.commands.cli.main: outputs and exit codes."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from pathlib import Path

import pytest
from compose_util import MSG, ca, recipient, signer, user
from keys_util import cert_pem, key_pem

from runtime.commands.cli import main
from smime import protect

SIGNED_AT = dt.datetime(2026, 6, 2, 12, 0, tzinfo=dt.UTC)
NOW = "2026-06-03T00:00:00"
Out = pytest.CaptureFixture[str]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    rkey, rcert = recipient("p256")
    other, _ = recipient("p384", "mallory")
    data = {
        "skey": key_pem(user("p256").key), "scert": user("p256").pem + ca().inter.pem,
        "rkey": key_pem(rkey), "rcert": cert_pem(rcert), "wrongkey": key_pem(other),
        "root": ca().root.pem, "msg": MSG,
        "triple": protect(MSG, mode="triple", signer=signer("p256"), recipients=[rcert],
                          now=SIGNED_AT),
        "signed": protect(MSG, mode="sign", signer=signer("p256"), now=SIGNED_AT),
    }
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    return {name: str(tmp_path / name) for name in data}


def test_verify_text(files: dict[str, str], capsys: Out) -> None:
    assert main(["smime", "verify", files["signed"], "--trust", files["root"], "--now", NOW]) == 0
    assert capsys.readouterr().out == (
        "signature (detached): VERIFIED\n"
        "  signer Common Name: alice@example.com: verified (sha256, signed "
        "2026-06-02T12:00:00+00:00, binding: address)\n"
    )


def test_verify_untrusted_exits_1(files: dict[str, str], capsys: Out) -> None:
    assert main(["smime", "verify", files["signed"], "--now", NOW]) == 1
    out = capsys.readouterr().out
    assert out.startswith("signature (detached): NOT VERIFIED\n")
    assert "    reason untrusted: " in out


def test_unwrap_triple_text_and_content(files: dict[str, str], tmp_path: Path,
                                        capsys: Out) -> None:
    argv = ["smime", "unwrap", files["triple"], "--key", files["rkey"], "--cert",
            files["rcert"], "--trust", files["root"], "--now", NOW, "-o", str(tmp_path / "o")]
    assert main(argv) == 0
    signer_line = ("  signer Common Name: alice@example.com: verified (sha256, signed "
                   "2026-06-02T12:00:00+00:00, binding: address)\n")
    assert capsys.readouterr().out == (
        "layer 1: signed (detached): verified\n" + signer_line
        + "layer 2: encrypted (aes256-gcm, authenticated): decrypted\n"
        + "layer 3: signed (detached): verified\n" + signer_line
        + "result: VERIFIED (signed, encrypted)\n"
    )
    content = (tmp_path / "o").read_bytes()
    assert content.startswith(b"From: alice@example.com\r\n") and b"Revenue is up" not in content
    assert b"Content-Transfer-Encoding: base64" in content  # 8-bit text made 7-bit safe


def test_unwrap_without_key_json(files: dict[str, str], capsys: Out) -> None:
    argv = ["smime", "unwrap", files["triple"], "--trust", files["root"], "--now", NOW, "--json"]
    assert main(argv) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["verified"], out["signed"], out["encrypted"]) == (False, True, True)
    assert [layer["kind"] for layer in out["layers"]] == ["signed", "encrypted"]
    assert out["errors"] == [{"code": "decryption-failed",
                              "text": "the message could not be decrypted"}]


def test_protect_then_unwrap_via_stdin(files: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: Out) -> None:
    out = tmp_path / "p.eml"
    assert main(["smime", "protect", "--mode", "sign-encrypt", "--key", files["skey"], "--cert",
                 files["scert"], "-r", files["rcert"], "--cipher", "aes128-cbc", "--form",
                 "opaque", files["msg"], "-o", str(out)]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out.read_bytes())))
    assert main(["smime", "unwrap", "--key", files["rkey"], "--cert", files["rcert"],
                 "--trust", files["root"]]) == 0
    text = capsys.readouterr().out
    assert "layer 1: encrypted (aes128-cbc, NOT authenticated): decrypted\n" in text
    assert "layer 2: signed (opaque): verified\n" in text


def test_sign_and_encrypt_to_stdout(files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes]
                                    ) -> None:
    assert main(["smime", "sign", files["msg"], "--key", files["skey"], "--cert",
                 files["scert"], "--form", "opaque"]) == 0
    assert b"smime-type=signed-data" in capsysbinary.readouterr().out
    assert main(["smime", "encrypt", files["msg"], "-r", files["rcert"]]) == 0
    assert b"smime-type=authEnveloped-data" in capsysbinary.readouterr().out


def test_decrypt_wrong_key_and_right_key(files: dict[str, str], tmp_path: Path,
                                         capsys: Out) -> None:
    enc = tmp_path / "e.eml"
    assert main(["smime", "encrypt", files["msg"], "-r", files["rcert"], "-o", str(enc)]) == 0
    assert main(["smime", "decrypt", str(enc), "--key", files["wrongkey"], "--cert",
                 files["rcert"]]) == 1
    assert capsys.readouterr().out == "NOT decrypted: the message could not be decrypted\n"
    assert main(["smime", "decrypt", str(enc), "--key", files["rkey"], "--cert",
                 files["rcert"]]) == 0
    assert capsys.readouterr().out == "decrypted (aes256-gcm, authenticated)\n"


def test_inspect(files: dict[str, str], tmp_path: Path, capsys: Out) -> None:
    enc = tmp_path / "e.eml"
    assert main(["smime", "encrypt", files["msg"], "-r", files["rcert"], "--cipher",
                 "aes128-cbc", "-o", str(enc)]) == 0
    assert main(["smime", "inspect", str(enc)]) == 0
    assert capsys.readouterr().out == (
        "signed: False\nencrypted: True\ncontent type: application/pkcs7-mime\n"
        "envelope: enveloped-data\ncipher: aes128-cbc\nrecipients: kari\n"
    )
    assert main(["smime", "inspect", files["signed"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["signers"] == ["Common Name: alice@example.com"] and info["form"] == "detached"


def test_not_smime_unwrap(files: dict[str, str], capsys: Out) -> None:
    assert main(["smime", "unwrap", files["msg"]]) == 1
    assert capsys.readouterr().out == "result: NOT VERIFIED (not S/MIME)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sign", "{msg}"], "needs a key"),
        (["sign", "{msg}", "--key", "{skey}"], "--key and --cert go together"),
        (["sign", "/nonexistent.eml", "--key", "{skey}", "--cert", "{scert}"], "cannot read"),
        (["protect", "--mode", "sign-encrypt", "--key", "{skey}", "--cert", "{scert}", "{msg}"],
         "recipient"),
        (["verify", "{msg}", "--trust", "/nonexistent"], "trust anchors"),
        (["verify", "{signed}", "--now", "yesterday"], "not an ISO 8601 time"),
        (["decrypt", "{msg}", "--key", "{msg}", "--cert", "{rcert}"], "key"),
    ],
)
def test_usage_errors_exit_2(files: dict[str, str], capsys: Out, argv: list[str],
                             message: str) -> None:
    assert main(["smime", *(a.format(**files) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("filterlang smime: error: ") and message in err
    assert "Traceback" not in err


def test_malformed_message_exits_1(files: dict[str, str], tmp_path: Path, capsys: Out) -> None:
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"Content-Type: multipart/signed\r\n\r\nno boundary\r\n")
    assert main(["smime", "verify", str(bad), "--trust", files["root"]]) == 1
    assert "boundary" in capsys.readouterr().err


def test_inspect_bad_base64_is_one_error(tmp_path: Path, capsys: Out) -> None:
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"From: a@example.com\r\nContent-Type: application/pkcs7-mime; "
                    b"smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    b"MIIB!!!not*base64===\r\n")
    assert main(["smime", "inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "not valid base64" in err


@pytest.mark.parametrize("from_value", [b"eve@evil.example)<alice@example.com>", b"a:;b:;", b"a@"])
def test_unparseable_from_in_every_action(files: dict[str, str], tmp_path: Path, capsys: Out,
                                          from_value: bytes) -> None:
    """verify, unwrap and inspect on a signed message whose From is not one mailbox: never a
    traceback, never verified, the reason code printed."""
    msg = tmp_path / "m.eml"
    msg.write_bytes(Path(files["signed"]).read_bytes().replace(b"From: alice@example.com",
                                                                b"From: " + from_value, 1))
    assert main(["smime", "verify", str(msg), "--trust", files["root"], "--now", NOW]) == 1
    out = capsys.readouterr()
    assert "NOT VERIFIED" in out.out and "from-unparseable" in out.out and not out.err
    assert main(["smime", "unwrap", str(msg), "--trust", files["root"], "--now", NOW]) == 1
    out = capsys.readouterr()
    assert "from-unparseable" in out.out and "result: NOT VERIFIED" in out.out and not out.err
    assert main(["smime", "inspect", str(msg)]) == 0
    out = capsys.readouterr()
    assert "form: detached" in out.out and not out.err
