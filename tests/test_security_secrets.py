"""Secrets never stored: plant known secrets in every format's records, ingest, scan every byte written.

Templates are each format's fixtures. Secrets go (a) under plausible keys added to every object
of a record and (b) into every string field as free text. After ``ingest file`` (and ``detect``
when the analytics exist) every Parquet file under the lake is read column by column as text,
every other file byte by byte, and stdout/stderr too: no planted secret may appear.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from ingest import sources
from ingest.redact import redact, redact_text
from tests.conftest import REPO, cli

FIXTURES = REPO / "tests" / "fixtures" / "formats"

BEARER = "opaqueBEARERplanted7Qx9Lm2Vb"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlUExBTlRFRGp3dA"
STS = "IQoJb3JpZ2luX2VjEPLANTEDstsSESSIONtoken" + "Zm9vYmFy" * 30  # long, like a real session token
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTED012"  # 40 chars
PASSWORD = "Plant3d-Horse-Battery!"
CLIENT_SECRET = "cs-PLANTED-5f0e1d2c3b4a"
VAULT = "hvs.CAESIPLANTEDvaultTOKENabcdef0123456789"
OPAQUE = "tok_PLANTEDopaque_8c1f2e"
PEM_BODY = "MIIEowIBAAKCAQEAPLANTEDpemBODYxyz0123456789abcdef"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"

# what must never be found (each secret, and a distinctive fragment where a prefix might survive)
NEEDLES = {
    "bearer token": BEARER, "JWT": JWT, "JWT signature": JWT.rsplit(".", 1)[1], "STS session token": STS[:60],
    "AWS secret access key": AWS_SECRET, "password": PASSWORD, "client secret": CLIENT_SECRET,
    "Vault token": VAULT, "opaque token": OPAQUE, "PEM private key": PEM_BODY,
}

# (a) plausible keys, as the sources spell them
KEYED: dict[str, str] = {
    "password": PASSWORD, "client_secret": CLIENT_SECRET, "clientSecret": CLIENT_SECRET,
    "access_token": OPAQUE, "accessToken": OPAQUE, "refresh_token": OPAQUE, "id_token": JWT,
    "sessionToken": STS, "SessionToken": STS, "secretAccessKey": AWS_SECRET, "SecretAccessKey": AWS_SECRET,
    "Authorization": f"Bearer {BEARER}", "X-Amz-Security-Token": STS, "client_token": VAULT, "token": VAULT,
    "private_key": PEM, "privateKey": PEM, "assertion": JWT, "userPassword": PASSWORD, "authToken": OPAQUE,
    "apiKey": OPAQUE, "secret": CLIENT_SECRET,
}
# (b) free text as logs really carry it
FREE_TEXT = (
    f"Authorization: Bearer {BEARER}; jwt {JWT}; X-Amz-Security-Token: {STS}; aws {AWS_SECRET}; "
    f"login password={PASSWORD} client_secret={CLIENT_SECRET}&access_token={OPAQUE}; vault {VAULT}; {PEM}"
)


def _templates() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(sources.PARSERS):
        d = FIXTURES / name
        recs = []
        for f in sorted(d.glob("*.jsonl")) if d.exists() else []:
            for line in f.read_bytes().splitlines():
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(r, dict):
                    recs.append(r)
        out[name] = recs[:12]
    return out


def _walk(v: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    out = [(path, v)]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _walk(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _walk(x, path + (i,))
    return out


def _set(rec: Any, path: tuple, value: Any) -> Any:
    rec = orjson.loads(orjson.dumps(rec))
    cur = rec
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return rec


def planted_records(name: str, recs: list[dict[str, Any]]) -> list[bytes]:
    """Variants of each record: secrets under plausible keys in every object; free text in each string."""
    out: list[bytes] = []
    for r in recs:
        keyed = orjson.loads(orjson.dumps(r))
        for _, node in _walk(keyed):
            if isinstance(node, dict):
                for k, v in KEYED.items():
                    node.setdefault(k, v)
        out.append(orjson.dumps(keyed))
        for path, v in _walk(r):
            if isinstance(v, str) and path:
                out.append(orjson.dumps(_set(r, path, f"{v} {FREE_TEXT}")))
        out.append(orjson.dumps({**r, "message": FREE_TEXT}))
    return out


def _find(blob: str) -> set[str]:
    return {k for k, s in NEEDLES.items() if s in blob}


def scan_tree(root: Path) -> dict[str, set[str]]:
    """Every file under ``root``: Parquet read column by column as text, other files as bytes."""
    leaks: dict[str, set[str]] = collections.defaultdict(set)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = f.read_bytes().decode("utf-8", "replace")
        for k in _find(raw):
            leaks[f"{f.relative_to(root)} (bytes)"].add(k)
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            for col in t.column_names:
                text = "\n".join(str(x) for x in t.column(col).to_pylist())
                for k in _find(text):
                    leaks[f"{f.relative_to(root).parts[0]}.{col}"].add(k)
    return dict(leaks)


def test_redactor_catches_each_planted_secret_in_isolation():
    for k, v in KEYED.items():
        assert not _find(orjson.dumps(redact({k: v})).decode()), k
    assert not _find(redact_text(FREE_TEXT))


def _normalized_leaks() -> tuple[dict[str, set[str]], int]:
    """Every planted variant through normalize (no dedup, so each variant is seen): leaks per format.column."""
    from ingest.normalize import normalize, to_tables

    leaks: dict[str, set[str]] = collections.defaultdict(set)
    n = 0
    for name, recs in _templates().items():
        lines = planted_records(name, recs)
        lines += [ln[: len(ln) // 2] for ln in lines[:5]]
        n += len(lines)
        ev, dl = to_tables(normalize([(ln, f"s:{name}:{i}") for i, ln in enumerate(lines)]))
        for tname, t in (("events", ev), ("dead_letter", dl)):
            for col in t.column_names:
                for k in _find("\n".join(str(x) for x in t.column(col).to_pylist())):
                    leaks[f"{name}: {tname}.{col}"].add(k)
    return dict(leaks), n


def test_raw_holds_no_planted_secret():
    """What redact.py owns: the redacted record (``raw``) in events and dead-letter, every format."""
    leaks, n = _normalized_leaks()
    assert n > 2000
    assert {k: v for k, v in leaks.items() if k.endswith(".raw")} == {}


# one test per redact.py fix made for this suite
@pytest.mark.parametrize("text, secret", [
    (f"login failed password={PASSWORD} for alice", PASSWORD),                       # key=value in free text
    (f"client_secret={CLIENT_SECRET}&grant_type=client_credentials", CLIENT_SECRET),
    (f"x-amz-security-token: {STS}", STS[:60]),                                       # header form
    (f"session {STS} used", STS[:60]),
    (f'{{"userPassword":"{PASSWORD}","authToken": "{OPAQUE}"', OPAQUE),                 # camelCase keys in text                                                # bare STS session token
    (f'{{"password":"{PASSWORD}","client_secret": "{CLIENT_SECRET}"', PASSWORD),     # truncated JSON (dead-letter)
    ("{\"pk\":\"-----BEGIN RSA PRIVATE KEY-----\\n" + PEM_BODY, PEM_BODY),            # cut-off PEM block
])
def test_redact_text_fixes(text, secret):
    assert secret not in redact_text(text)


def test_redact_text_leaves_plain_words_alone():
    plain = "grant_type=token&path=/token id=tok-1 token_type=bearer"
    assert redact_text(plain) == plain


def test_canonical_columns_hold_no_planted_secret():
    leaks, _ = _normalized_leaks()
    assert leaks == {}


@pytest.mark.slow
def test_no_planted_secret_is_written_anywhere(tmp_path):
    tpl = _templates()
    data = tmp_path / "data"
    data.mkdir()
    planted = collections.Counter()
    for name, recs in tpl.items():
        lines = planted_records(name, recs)
        # a few broken copies so the dead-letter path is exercised with secrets in it
        lines += [ln[: len(ln) // 2] for ln in lines[:5]]
        (data / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        planted[name] = len(lines)
    lake = tmp_path / "lake"
    env = {"DECISIONPATH_LOG": "debug"}
    outs = [cli("ingest", "file", str(data), "--lake", str(lake), "--json", env=env)]
    stats = orjson.loads(outs[0].stdout)
    assert stats["events"] > 0 and stats["dead_letter"] > 0
    try:
        import analytics.detectors  # noqa: F401
        p = cli("detect", "--lake", str(lake), "--json", check=False)
        if p.returncode == 0:
            outs.append(p)
    except ImportError:
        pass
    leaks = scan_tree(lake)
    for p in outs:
        for k in _find(p.stdout + p.stderr):
            leaks.setdefault("stdout/stderr", set()).add(k)
    if os.environ.get("RELIABILITY_SECRETS_OUT"):
        Path(os.environ["RELIABILITY_SECRETS_OUT"]).write_bytes(orjson.dumps(
            {"planted_records": dict(planted), "secrets": sorted(NEEDLES), "leaks": {k: sorted(v) for k, v in leaks.items()},
             "ingest": stats}, option=orjson.OPT_INDENT_2))
    assert leaks == {}
