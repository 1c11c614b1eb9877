"""A mutation soak of the gateway's whole pipeline, with real keys and real policies.

    python -m fuzz.soak [--seconds 600 | --runs N] [--seed 1]     # make fuzz-soak

The harnesses in fuzz/targets each drive one parser under atheris. The queue runs all the
stages in turn and moves a message to `hold` whenever one raises: right for a bug, but an
outsider who can make a stage raise can then park mail at will, and the harnesses do not see
how the stages feed each other (the S/MIME stage's output is the filters' input). So this
soak takes real S/MIME mail -- the client corpus (../shared/vectors/clients) and a partner's
messages signed, signed opaque, and signed then encrypted for us -- mutates each (bytes
changed, cut, repeated, MIME and header tokens inserted), and runs every variant through the
stages `filterlang serve` builds from a gateway.toml (build_stages, run_pipeline, settle), as
an outsider (inbound decrypt, verify, harvest) and as one of our users (outbound signing and
encryption for the partner). It fails on

- an exception other than RetryLater leaving the pipeline (the queue would hold the message);
- a partner's message, mutated, reported verified although the content delivered is not what
  the partner signed (a signature that does not cover what the user reads).

No coverage feedback: atheris instruments a pipeline's worth of code too slowly to help.
What this has instead is every stage at once, at hundreds of variants a second.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from fuzz.corpus import ROOT, VECTORS, files

# Pieces that take parsers down unusual paths: line breaks and folding, NULs, comments and
# quotes, encoded words, boundaries and the S/MIME types and parameters.
TOKENS = (
    b"\r\n", b"\r\n ", b"\n", b"\x00", b"(", b'"', b"\\", b"=?utf-8?B?", b"=?x?q?=ff?=", b"?=",
    b"--", b"boundary=", b"; boundary=\"b\"", b"\r\n--b\r\n", b"\r\n--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n", b'charset="\x00"', b"name*0=a; name*=b",
    b"filename*=utf\x008''a", b"\xff", b";", b"From: ", b"From: a@b, c@d\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"application/pkcs7-mime", b"smime-type=enveloped-data", b"smime-type=signed-data",
    b"multipart/signed", b'protocol="application/pkcs7-signature"', b"micalg=sha-256",
    b"\r\n\r\n", b"=\r\n", b"====",
)


class Gateway:
    """Our gateway (example.org: alice, bob) and a partner (partner.example: carol) whose
    CA we trust, with the stages `serve` builds from our gateway.toml."""

    def __init__(self, root: Path) -> None:
        # The gateway set-up the end-to-end tests use (tests/gateway/e2e_support.py).
        from runtime.config.config import load_config
        from runtime.pipeline.flow import build_pipeline
        from runtime.pipeline.stages import build_stages
        from tests.gateway.e2e_support import Org

        self.ours = Org(root / "ours", "example.org", ("alice", "bob"))
        self.partner = Org(root / "partner", "partner.example", ("carol",))
        self.ours.trust(self.partner)
        config = load_config(self.ours.root / "gateway.toml")
        self.stages = build_pipeline(build_stages(config, store=self.ours.store,
                                                  alert=lambda kind, text: None))

    def partner_mail(self) -> list[bytes]:
        """The partner's message to bob: signed (detached, opaque), signed then encrypted."""
        from smime import compose
        from tests.gateway.e2e_support import message

        p = self.partner
        signer = compose.Signer(p.cert.key, p.cert.asn1, [p.ca.asn1])
        plain = message("carol@partner.example", "bob@example.org", "figures",
                        "Dear Bob,\r\nthe figures are 1, 2 and 3.\r\n")
        return [compose.protect(plain, mode="sign", signer=signer, form="detached"),
                compose.protect(plain, mode="sign", signer=signer, form="opaque"),
                compose.protect(plain, mode="sign-encrypt", signer=signer,
                                recipients=[self.ours.cert.cert])]

    def close(self) -> None:
        self.ours.store.close()


def canonical(data: bytes) -> bytes:
    """Line ends as S/MIME canonicalises them (RFC 8551 3.1.1), so a variant that differs only
    there is the same content."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def content_of(delivered: bytes) -> bytes:
    """What the user reads of a message the S/MIME stage passed on: its body, without the
    status header the stage adds and without the headers (S/MIME does not sign those)."""
    return canonical(delivered).partition(b"\r\n\r\n")[2]


def mutate(seed: bytes, rnd: random.Random) -> bytes:
    d = bytearray(seed)
    for _ in range(rnd.randint(1, 8)):
        op, pos = rnd.random(), rnd.randrange(0, len(d) + 1)
        if op < 0.3:
            d[pos:pos] = rnd.choice(TOKENS)
        elif op < 0.5 and d:
            d[min(pos, len(d) - 1)] = rnd.randrange(256)
        elif op < 0.7:
            del d[pos:pos + rnd.randint(1, 64)]
        elif op < 0.8 and d:
            start = rnd.randrange(len(d))
            d[pos:pos] = d[start:start + rnd.randint(1, 200)]
        else:
            d[pos:pos] = rnd.choice(TOKENS) * rnd.randint(2, 300)
    return bytes(d)


def client_corpus() -> list[bytes]:
    return list(files(VECTORS / "clients", "*.eml")) if VECTORS.is_dir() else []


class Soak:
    def __init__(self, gateway: Gateway, seed: int, out: Path = ROOT / "var" / "fuzz" / "soak"
                 ) -> None:
        self.gw = gateway
        self.out = out  # where the first input of each kind of failure is kept
        self.rnd = random.Random(seed)
        self.partner = gateway.partner_mail()
        # What bob reads of each partner message, as the gateway delivers it unmutated.
        self.expected = [self._inbound(m, recording=True)[1] for m in self.partner]
        assert all(e is not None for e in self.expected), "the partner's own mail must verify"
        self.seeds = self.partner + client_corpus()
        self.runs = 0
        self.verified = 0  # partner variants still verified (their content checked)
        self.failures: Counter[tuple[str, ...]] = Counter()

    def _inbound(self, data: bytes, *, recording: bool) -> tuple[object, bytes | None]:
        """Run `data` from an outsider to bob (and a partner address); the settled outcome,
        and the content the S/MIME stage passed on when it said verified (else None)."""
        from runtime.pipeline.envelope import Envelope
        from runtime.pipeline.flow import InFlight, run_pipeline
        from runtime.pipeline.outcome import settle

        env = Envelope("carol@partner.example", ("bob@example.org", "dan@partner.example"),
                       peer="192.0.2.9", policy="default", helo="mx.partner.example")
        msg = InFlight(env, data, records=[] if recording else None)
        run_pipeline(self.gw.stages, msg)
        verified = None
        for r in msg.records or ():
            if r.stage == "smime_inbound" and r.facts.get("verified") and r.data is not None:
                verified = content_of(r.data)
        return settle(msg), verified

    def _outbound(self, data: bytes) -> object:
        from runtime.pipeline.envelope import Envelope
        from runtime.pipeline.flow import InFlight, run_pipeline
        from runtime.pipeline.outcome import settle

        env = Envelope("alice@example.org", ("carol@partner.example", "bob@example.org"),
                       peer="127.0.0.2", policy="users", helo="client.example.org")
        msg = InFlight(env, data)
        run_pipeline(self.gw.stages, msg)
        return settle(msg)

    def one(self) -> None:
        from runtime.pipeline.flow import RetryLater

        # A third of the variants are the partner's: the few whose signature survives the
        # mutation are the ones the content check is about.
        index = (self.rnd.randrange(len(self.partner)) if self.rnd.random() < 1 / 3
                 else self.rnd.randrange(len(self.seeds)))
        data = mutate(self.seeds[index], self.rnd)
        partner = index < len(self.partner)
        self.runs += 1
        try:
            if partner or self.runs % 2:
                # The S/MIME stage's record says what it verified (as `filterlang test` shows).
                _, verified = self._inbound(data, recording=partner)
                self.verified += verified is not None
                if verified is not None and partner and verified != self.expected[index]:
                    self._fail(("verified-but-changed",), data,
                               "reported verified, but the content delivered is not what the "
                               "partner signed")
            else:
                self._outbound(data)
        except RetryLater:
            pass
        except Exception as exc:  # noqa: BLE001 - every escape is a finding
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            self._fail((type(exc).__name__, where), data, "".join(
                traceback.format_exception(exc, limit=-8)))

    def _fail(self, key: tuple[str, ...], data: bytes, text: str) -> None:
        if not self.failures[key]:
            self.out.mkdir(parents=True, exist_ok=True)
            name = self.out / ("-".join(key).replace("/", "_").replace(":", "_") + ".eml")
            name.write_bytes(data)
            print(f"NEW {' '.join(key)} (input in {name})\n{text}", flush=True)
        self.failures[key] += 1


def soak(seconds: float | None, runs: int | None, seed: int) -> Soak:
    with tempfile.TemporaryDirectory(prefix="filterlang-soak-") as tmp:
        gw = Gateway(Path(tmp))
        try:
            s = Soak(gw, seed)
            end = time.monotonic() + seconds if seconds is not None else None
            while (runs is None or s.runs < runs) and (end is None or time.monotonic() < end):
                s.one()
        finally:
            gw.close()
    return s


def main(argv: Iterator[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.seconds is None and args.runs is None:
        args.seconds = 600.0
    started = time.monotonic()
    s = soak(args.seconds, args.runs, args.seed)
    took = time.monotonic() - started
    print(f"{s.runs} variants in {took:.0f} s ({s.runs / max(took, 1e-9):.0f}/s), "
          f"{s.verified} partner variants still verified (each delivering what the partner "
          f"signed), {len(s.failures)} distinct failures: {dict(s.failures)}")
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
