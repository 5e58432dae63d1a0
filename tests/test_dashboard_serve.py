"""analytics.serve (bind policy, auth detection, command line) and the graph component (offline, escaped)."""

from __future__ import annotations

import json
import re

import networkx as nx
import pytest

from analytics import serve
from dashboards.graph_view import graph_html, graph_payload, guess_kind, links_graph
from ingest.errors import ConfigError

AUTH = """[auth]
redirect_uri = "https://dash.example.test/oauth2callback"
cookie_secret = "s3cret"
client_id = "decisionpath"
client_secret = "x"
server_metadata_url = "https://idp.example.test/.well-known/openid-configuration"
"""


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_are_allowed(addr):
    assert serve.is_loopback(addr)
    serve.check_address(addr, allow_unauthenticated=False, files=[])


@pytest.mark.parametrize("addr", ["0.0.0.0", "10.1.2.3", "::", "192.168.0.10"])
def test_public_address_refused_without_auth(addr):
    with pytest.raises(ConfigError, match="refusing to serve .* without authentication"):
        serve.check_address(addr, allow_unauthenticated=False, files=[])
    serve.check_address(addr, allow_unauthenticated=True, files=[])


def test_public_address_allowed_with_oidc_configured(tmp_path):
    f = tmp_path / "secrets.toml"
    f.write_text(AUTH)
    assert serve.auth_configured([f])
    serve.check_address("0.0.0.0", allow_unauthenticated=False, files=[f])
    f.write_text('[auth]\nredirect_uri = "x"\n')  # incomplete: no cookie secret, no provider
    assert not serve.auth_configured([f])
    f.write_text(AUTH.replace("client_id", "[auth.okta]\nclient_id").replace('cookie_secret = "s3cret"\n', "")
                 .replace("[auth]\n", '[auth]\ncookie_secret = "s3cret"\n'))
    assert serve.auth_configured([f])  # a named provider section counts too
    f.write_text("not [valid toml")
    assert not serve.auth_configured([f])


def test_streamlit_command_is_headless_without_telemetry(tmp_path):
    cmd = serve.streamlit_command(tmp_path / "lake", 8765, "127.0.0.1")
    joined = " ".join(cmd)
    assert cmd[1:4] == ["-m", "dashboards.server", "run"] and cmd[4].endswith("dashboards/app.py")
    for flag in ("--server.headless true", "--browser.gatherUsageStats false", "--server.address 127.0.0.1",
                 "--server.port 8765"):
        assert flag in joined
    assert cmd[-3:] == ["--", "--lake", str((tmp_path / "lake").resolve())]


def test_start_refuses_a_missing_lake(tmp_path):
    with pytest.raises(ConfigError, match="no lake at"):
        serve.start_dashboard(tmp_path / "nope", port=1, address="127.0.0.1")


def test_cli_dashboard_refuses_public_bind(tmp_path, capsys):
    from analytics.cli import main

    (tmp_path / "events").mkdir()
    code = main(["dashboard", "--lake", str(tmp_path), "--address", "0.0.0.0"])
    assert code == 2
    assert "refusing to serve the dashboard on non-loopback address" in capsys.readouterr().err


# -- graph component ---------------------------------------------------------------------------
def test_graph_html_is_self_contained_and_escaped():
    g = nx.MultiDiGraph()
    evil = '</script><script>alert(1)</script><img src="http://evil.example/x">'
    g.add_node(evil, kind="agent")
    g.add_node("cred", kind="credential")
    g.add_edge(evil, "cred", kind="issued", how="jti")
    g.add_edge(evil, "cred", kind="exchanged_for", how="act claim")
    html = graph_html(g, focus=[evil])
    assert "</script><script>alert" not in html
    assert html.count("<script") == 2  # the data block and the page script, nothing injected
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external resource"
    assert "@import" not in html and "url(http" not in html
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert {n["id"] for n in data["nodes"]} == {evil, "cred"}
    assert len(data["edges"]) == 2  # parallel edges are kept
    assert next(n for n in data["nodes"] if n["id"] == evil)["focus"] is True


def test_big_graph_is_trimmed_around_the_focus():
    g = nx.gnm_random_graph(900, 2000, seed=1, directed=True)
    g = nx.relabel_nodes(g, {i: f"n{i}" for i in g.nodes})
    data = graph_payload(g, focus=["n899"])
    assert len(data["nodes"]) == 400 and data["dropped"] == 500
    assert any(n["id"] == "n899" for n in data["nodes"])


def test_path_layout_is_layered_left_to_right():
    g = links_graph([{"from": "alice@corp.example", "to": "jti-1", "kind": "issued", "how": "session"},
                     {"from": "jti-1", "to": "mcp:e1", "kind": "used", "how": "token jti"}])
    xs = {n["id"]: n["x"] for n in graph_payload(g)["nodes"]}
    assert xs["alice@corp.example"] < xs["jti-1"] < xs["mcp:e1"]
    assert [guess_kind(i) for i in ("alice@corp.example", "jti-1", "mcp:e1", "spiffe://x/agent/a",
                                    "arn:aws:iam::1:role/r")] == ["human", "credential", "event", "agent", "role"]
