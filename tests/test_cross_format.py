"""Mixed-source scenarios: one incident spans two or more real formats and its decision path crosses them.

Each scenario is a small hand-written timeline of records as the real systems write them
(``tests/fixtures/cross_format/*.jsonl``), with the ids those systems really share (the OIDC token's
``jti`` in CloudTrail's ``webIdFederationData``, the access key of the previous hop as the caller of
the next ``AssumeRole``, the Okta ``externalSessionId``, the token ``jti`` in OPA input and MCP auth).
They are ingested with the real file collector into a fresh lake, then checked with
``analytics.paths.decision_path`` (exact link sets: from, to, kind, how) and a real
``analytics.detect.run`` (exact detection ids, key events and alert event ids).

``test_auto_sniffing_all_formats_in_one_file`` feeds one JSONL holding every format (plain records
and envelopes, interleaved) plus deliberately unsupported records through ``--format auto``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from analytics.detect import DetectSettings, run
from analytics.lake import connect
from analytics.paths import decision_path
from ingest.collect_files import ingest_files
from ingest.lake import Lake
from tests.conftest import cli

FIX = Path(__file__).parent / "fixtures" / "cross_format"
ALICE = "alice@corp.example"
ID_ALICE = f"identity:{ALICE}"
SHARED = "shared credential_id"
ROLE = "credential_parent_id (role.assumed)"


def _lake(tmp_path: Path, *names: str) -> Path:
    lake = tmp_path / "lake"
    for n in names:
        stats = ingest_files([FIX / n], Lake(lake))
        assert stats.dead_letter == 0, n
        assert stats.events == stats.read, n  # one canonical row per record in these timelines
    return lake


def _links(lake: Path, event_id: str) -> tuple[set[tuple[str, str, str, str]], tuple[str, ...]]:
    con = connect(lake)
    try:
        p = decision_path(con, event_id)
    finally:
        con.close()
    return p.link_set(), p.missing


def _alerts(lake: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    res = run(DetectSettings(lake_dir=lake))
    return sorted((a.to_json()["detection"], a.to_json()["key_event_id"], tuple(a.to_json()["event_ids"]))
                  for a in res.new_alerts)


def _formats(links: set[tuple[str, str, str, str]]) -> set[str]:
    return {n.split(":", 1)[0] for lk in links for n in lk[:2] if not n.startswith("identity:")}


def _spire_event(lake: Path) -> str:
    """SPIRE lines have no id of their own (the event id hashes the record): look it up."""
    con = connect(lake)
    try:
        (eid,) = con.execute("SELECT event_id FROM events WHERE format = 'spire'").fetchone()
    finally:
        con.close()
    return str(eid)


# --- a: an OIDC token (Keycloak) or a JWT-SVID (SPIRE) exchanged for AWS credentials, then a role chain ------

def test_keycloak_token_to_cloudtrail_role_chain(tmp_path: Path) -> None:
    """alice logs in (Keycloak), her token is exchanged for the ops agent's token (RFC 8693), the agent
    presents it to STS (AssumeRoleWithWebIdentity, jti in webIdFederationData), then chains
    AgentOps → DeployRole → PlatformAdmin and creates an access key."""
    lake = _lake(tmp_path, "a_keycloak_to_cloudtrail.jsonl")
    links, missing = _links(lake, "cloudtrail:ct-a-0007")
    assert links == {
        ("keycloak:kc-a-0001", "keycloak:kc-a-0002", "authenticated", "credential_parent_id (token.issued)"),
        ("keycloak:kc-a-0002", "keycloak:kc-a-0003", "exchanged_for", "credential_parent_id (token.exchanged)"),
        ("keycloak:kc-a-0003", "cloudtrail:ct-a-0004", "role_assumed", ROLE),  # the jti crosses the formats
        ("cloudtrail:ct-a-0004", "cloudtrail:ct-a-0005", "role_assumed", ROLE),
        ("cloudtrail:ct-a-0005", "cloudtrail:ct-a-0006", "role_assumed", ROLE),
        ("cloudtrail:ct-a-0006", "cloudtrail:ct-a-0007", "used_credential", SHARED),
        (ID_ALICE, "cloudtrail:ct-a-0006", "delegated_by", "on_behalf_of on role.assumed"),  # STS sourceIdentity
    }
    assert _formats(links) == {"keycloak", "cloudtrail"}
    assert missing == ("no authorization decision found",)  # cloud IAM decides; CloudTrail logs no decision
    assert _alerts(lake) == [
        ("DP-PC-3", "cloudtrail:ct-a-0006",
         ("cloudtrail:ct-a-0004", "cloudtrail:ct-a-0005", "cloudtrail:ct-a-0006", "cloudtrail:ct-a-0007")),
    ]


def test_spire_jwt_svid_to_cloudtrail_role_chain(tmp_path: Path) -> None:
    """A CI workload's JWT-SVID (SPIRE) is its web identity; two hops reach OrganizationAccountAccessRole."""
    lake = _lake(tmp_path, "a2_spire_to_cloudtrail.jsonl")
    spire = _spire_event(lake)
    links, missing = _links(lake, "cloudtrail:ct-b-0004")
    assert links == {
        (spire, "cloudtrail:ct-b-0002", "role_assumed", ROLE),  # JWT-SVID jwt_id = webIdFederationData jti
        ("cloudtrail:ct-b-0002", "cloudtrail:ct-b-0003", "role_assumed", ROLE),
        ("cloudtrail:ct-b-0003", "cloudtrail:ct-b-0004", "used_credential", SHARED),
    }
    assert _formats(links) == {"spire", "cloudtrail"}
    assert missing == ("no authorization decision found",)
    assert _alerts(lake) == [
        ("DP-PC-3", "cloudtrail:ct-b-0003", ("cloudtrail:ct-b-0002", "cloudtrail:ct-b-0003", "cloudtrail:ct-b-0004")),
    ]


# --- b: one credential used from several addresses ------------------------------------------------------

def test_cloudtrail_access_key_from_two_addresses(tmp_path: Path) -> None:
    """A long-lived IAM user key used from the office NAT, then from an unknown public address."""
    lake = _lake(tmp_path, "b1_cloudtrail_key_two_addresses.jsonl")
    ids = tuple(f"cloudtrail:ct-c-000{i}" for i in range(1, 5))
    assert _alerts(lake) == [("DP-TR-1", "cloudtrail:ct-c-0004", ids)]
    links, _ = _links(lake, "cloudtrail:ct-c-0004")
    assert links == set()  # an IAM user key has no issuance in CloudTrail: nothing to link, said in `missing`


def test_okta_session_from_two_addresses(tmp_path: Path) -> None:
    """One Okta session (externalSessionId) starts in Lyon and grants a privilege from a Tor exit."""
    lake = _lake(tmp_path, "b2_okta_session_two_addresses.jsonl")
    start, update, grant = (f"okta:7d1e0000-0000-4000-8000-00000000b20{i}" for i in (1, 2, 3))
    assert _alerts(lake) == [("DP-TR-1", grant, (start, update, grant))]
    links, _ = _links(lake, grant)
    assert links == {(start, grant, "used_credential", SHARED)}


def test_workload_nat_change_is_benign_then_copied_token_fires(tmp_path: Path) -> None:
    """Benign look-alike: the research agent's token (Keycloak exchange) is presented by the same SPIFFE
    workload from two NAT addresses (OPA + MCP records): no alert. Then the same jti is presented by a
    peer without an SVID: DP-TR-1, with every use as evidence."""
    lake = _lake(tmp_path, "b3_benign_nat_change.jsonl")
    spire = _spire_event(lake)
    links, missing = _links(lake, "mcp:mcp-d-0007")
    assert links == {
        ("keycloak:kc-d-0001", "keycloak:kc-d-0002", "authenticated", "credential_parent_id (token.issued)"),
        ("keycloak:kc-d-0002", "keycloak:kc-d-0003", "exchanged_for", "credential_parent_id (token.exchanged)"),
        (ID_ALICE, "keycloak:kc-d-0003", "delegated_by", "act chain (delegation_chain) on token.exchanged"),
        ("keycloak:kc-d-0003", "mcp:mcp-d-0007", "used_credential", SHARED),
        (spire, "mcp:mcp-d-0007", "workload_svid", "src_workload = SVID spiffe_id, minted ≤ t < expiry"),
        ("opa:opa-d-0006", "mcp:mcp-d-0007", "decided", "shared trace_id+span_id"),
    }
    assert _formats(links) == {"keycloak", "spire", "opa", "mcp"}
    assert missing == ()
    assert _alerts(lake) == []

    stats = ingest_files([FIX / "b4_stolen_token_unknown_peer.jsonl"], Lake(lake))
    assert (stats.events, stats.dead_letter) == (2, 0)
    assert _alerts(lake) == [
        ("DP-TR-1", "mcp:mcp-d-0009",
         ("keycloak:kc-d-0003", "opa:opa-d-0004", "mcp:mcp-d-0005", "opa:opa-d-0006", "mcp:mcp-d-0007",
          "opa:opa-d-0008", "mcp:mcp-d-0009")),
    ]
    links, missing = _links(lake, "mcp:mcp-d-0009")
    assert ("opa:opa-d-0008", "mcp:mcp-d-0009", "decided", "shared trace_id+span_id") in links
    assert not any(lk[2] == "workload_svid" for lk in links)  # the copied token came with no SVID
    assert missing == ()


def test_entra_session_refreshed_from_two_addresses(tmp_path: Path) -> None:
    """One Entra session (sessionId) signs in interactively, then is refreshed from a Tor exit."""
    lake = _lake(tmp_path, "b5_entra_session_two_addresses.jsonl")
    ids = tuple(f"entra:9a8b7c6d-0000-4e5f-8a9b-0000000b5b5{i}" for i in (1, 2, 3))
    assert _alerts(lake) == [("DP-TR-1", ids[-1], ids)]


# --- c: GCP service-account delegation and Kubernetes impersonation --------------------------------------

GCP_MINT = "gcp_audit:gcp-e-0001"     # orchestrator-sa mints a token for research-sa, delegated by alice
GCP_READ = "gcp_audit:gcp-e-0002"     # research-sa reads an object; delegation [alice, orchestrator-sa]
K8S_NATIVE = "k8s_audit:9d0c1b2a-eeee-4f5e-8d7c-000000000e03"  # alice --as system:serviceaccount:prod:deployer
K8S_GKE = "k8s_audit:9d0c1b2a-eeee-4f5e-8d7c-000000000e04"     # the same on GKE (authoritySelector)
DEPLOYER = "system:serviceaccount:prod:deployer"
ORCH_SA = "orchestrator-sa@acme-prod.iam.gserviceaccount.com"
RES_SA = "research-sa@acme-prod.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def delegation_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lake(tmp_path_factory.mktemp("deleg"), "c_gcp_delegation_k8s_impersonation.jsonl")


def test_delegation_is_in_the_canonical_rows(delegation_lake: Path) -> None:
    """The parsers map GCP serviceAccountDelegationInfo and k8s impersonation to the delegation columns."""
    con = connect(delegation_lake)
    try:
        got = {r[0]: r[1:] for r in con.execute(
            "SELECT event_id, actor_id, on_behalf_of, delegation_chain, target_id FROM events").fetchall()}
    finally:
        con.close()
    assert got == {
        GCP_MINT: (ORCH_SA, ALICE, [ALICE, ORCH_SA], RES_SA),
        GCP_READ: (RES_SA, ALICE, [ALICE, ORCH_SA, RES_SA], None),
        K8S_NATIVE: (DEPLOYER, ALICE, [ALICE, DEPLOYER], DEPLOYER),
        K8S_GKE: (DEPLOYER, ALICE, [ALICE, DEPLOYER], DEPLOYER),
    }
    assert _alerts(delegation_lake) == []


@pytest.mark.parametrize("event_id", [GCP_MINT, GCP_READ, K8S_NATIVE, K8S_GKE])
def test_delegation_appears_in_the_decision_path(delegation_lake: Path, event_id: str) -> None:
    links, _ = _links(delegation_lake, event_id)
    assert (ID_ALICE, event_id, "delegated_by", "act chain (delegation_chain) on the action record") in links


def test_delegation_actions_have_no_lineage(delegation_lake: Path) -> None:
    """Besides delegation, these actions have no lineage to link: no credential, or no issuance of it."""
    for eid in (GCP_MINT, GCP_READ, K8S_NATIVE, K8S_GKE):
        links, missing = _links(delegation_lake, eid)
        assert {lk for lk in links if lk[2] != "delegated_by"} == set(), eid
        assert any("no credential lineage" in m or "no issuance record" in m for m in missing), (eid, missing)


# --- --format auto over one file holding every format ------------------------------------------------------

MIXED = FIX / "mixed"
# line (and envelope item) → format; every format at least once, plain records and envelopes interleaved
EXPECTED = {
    "1": "keycloak", "2": "cloudtrail", "3": "okta", "4": "spire", "5": "k8s_audit", "6": "gcp_audit",
    "7": "opa", "8": "entra", "9": "mcp", "10": "vault", "11": "ocsf", "12": "k8s_audit",  # GKE LogEntry
    "13#0": "okta", "13#1": "okta",               # Okta event hook delivery
    "14#0": "cloudtrail", "14#1": "cloudtrail",   # {"Records": [...]} on one line
    "15#0": "entra",                              # Azure Monitor {"records": [...]}: sign-in + Activity log
    "16#0": "k8s_audit",                          # AKS kube-audit diagnostic record (unwrapped)
    "20": "ocsf", "21": "entra", "22": "cloudtrail", "23": "okta",
}
UNSUPPORTED = {  # deliberately: Azure Activity (inside the Entra envelope), Key Vault, OCSF 4001, random JSON
    "15#1": "unsupported format: no parser recognises a record with keys callerIpAddress, category, correlationId, "
            "level, operationName, resourceId, resultType, time",
    "17": "unsupported format: no parser recognises a record with keys category, operationName, properties, "
          "resourceId, resultType, time",
    "18": "unsupported format: no parser recognises a record with keys activity_id, class_name, class_uid, "
          "dst_endpoint, metadata, src_endpoint, time",
    "19": "unsupported format: no parser recognises a record with keys hello, n",
}


def _by_line(rows: Iterator[tuple[str, str]]) -> dict[str, str]:
    return {origin.rsplit(".jsonl:", 1)[1]: v for origin, v in rows}


def test_auto_sniffing_all_formats_in_one_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    stats = ingest_files([MIXED], lake, fmt="auto")
    assert (stats.read, stats.events, stats.dead_letter) == (23, len(EXPECTED), len(UNSUPPORTED))
    con = duckdb.connect()
    ev = con.execute("SELECT origin, format FROM read_parquet($f)", {"f": lake.files("events")}).fetchall()
    dead = con.execute("SELECT origin, reason FROM read_parquet($f)", {"f": lake.files("dead_letter")}).fetchall()
    assert _by_line(iter(ev)) == EXPECTED
    assert len(ev) == len(EXPECTED)
    assert _by_line(iter(dead)) == UNSUPPORTED
    assert set(EXPECTED.values()) == {"keycloak", "spire", "opa", "mcp", "cloudtrail", "vault", "okta", "k8s_audit",
                                      "gcp_audit", "entra", "ocsf"}


def test_auto_sniffing_cli(tmp_path: Path) -> None:
    """The same through the command line, as the README shows it."""
    p = cli("ingest", "file", str(MIXED), "--format", "auto", "--lake", str(tmp_path / "lake"), "--json")
    out = json.loads(p.stdout)
    assert (out["read"], out["events"], out["dead_letter"]) == (23, len(EXPECTED), len(UNSUPPORTED))


# --- README "Supported formats": every example is read by its format and sniffed as it ---------------------

README = Path(__file__).resolve().parent.parent / "README.md"
ALL_FORMATS = {"keycloak", "spire", "opa", "mcp", "cloudtrail", "vault", "okta", "k8s_audit", "gcp_audit", "entra", "ocsf"}


def _readme_examples() -> list[tuple[str, str]]:
    import re

    text = README.read_text()
    section = text.split("\n## Supported formats\n", 1)[1].split("\n## ", 1)[0]
    pairs = re.findall(r"```json\n(.+?)\n```\n```bash\n.*?--format (\w+) --lake", section, flags=re.S)
    return [(fmt, rec) for rec, fmt in pairs]


def test_readme_examples_cover_every_format() -> None:
    assert sorted(f for f, _ in _readme_examples()) == sorted(ALL_FORMATS)


@pytest.mark.parametrize("fmt,rec", _readme_examples(), ids=[f for f, _ in _readme_examples()])
def test_readme_example_parses(fmt: str, rec: str) -> None:
    from ingest import sources
    from ingest.normalize import normalize

    assert [n for n, p in sources.PARSERS.items() if p.sniff(json.loads(rec))] == [fmt]
    for hint in (fmt, "auto"):
        batch = normalize([(rec.encode(), "readme:1")], fmt=hint)
        assert batch.dead == [] and [e["format"] for e in batch.events] == [fmt], (hint, batch.dead)
