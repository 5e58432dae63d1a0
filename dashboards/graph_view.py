"""A self-contained interactive graph component: inline SVG and a few lines of JavaScript.

No CDN, no package front-end, no network: the layout is computed in Python (networkx), the HTML
carries the data and the script inline, and ``st.components.v1.html`` renders it in a sandboxed
iframe. Pan by dragging the background, zoom with the wheel or the buttons, click a node or an
edge for its details. Log text reaches the page only through ``textContent`` (never as HTML) and
the embedded JSON escapes ``<``, so a hostile identity name cannot inject markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

KIND_COLOURS = {
    "identity": "#2563eb", "human": "#0ea5e9", "agent": "#7c3aed", "workload": "#9333ea",
    "service_account": "#6366f1", "role": "#db2777", "credential": "#f59e0b", "task": "#65a30d",
    "tool": "#14b8a6", "resource": "#64748b", "policy": "#ef4444", "policy_version": "#ef4444",
    "decision": "#dc2626", "event": "#475569", "alert": "#b91c1c",
}
MAX_NODES = 400
# Columns of a digest graph, left to right: who delegated and which policy decided, the identity,
# what it held (credentials, tasks), what it called, what it touched.
DIGEST_LABEL = 26  # characters of a digest node's label (the full id is in its details)
DIGEST_COLUMNS = {"identity": 0, "policy_version": 0, "credential": 2, "task": 3, "tool": 4, "resource": 5}


def _kind(attrs: Mapping[str, Any]) -> str:
    for k in ("kind", "type", "node_type", "category"):
        if attrs.get(k):
            return str(attrs[k])
    return "node"


def _plain(v: Any) -> Any:
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple | set):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def trim(g: nx.Graph, focus: Iterable[str] = (), max_nodes: int = MAX_NODES) -> tuple[nx.Graph, int]:
    """Keep the focus nodes and the best-connected others, up to ``max_nodes``; returns (graph, dropped)."""
    if g.number_of_nodes() <= max_nodes:
        return g, 0
    keep = [n for n in focus if n in g]
    rest = sorted((n for n in g.nodes if n not in set(keep)), key=lambda n: -g.degree(n))
    keep += rest[: max_nodes - len(keep)]
    return g.subgraph(keep).copy(), g.number_of_nodes() - len(keep)


def summarise(g: nx.MultiDiGraph, focus: str, top: int = 8) -> tuple[nx.MultiDiGraph, dict[str, int]]:
    """A legible digest of a busy identity graph: credentials grouped per task, then the ``top`` nodes
    of each type (by edge count) kept and the rest of that type merged into one ``+N more`` node.

    Edges merged together add their counts, keep the earliest first and latest last sighting, and
    list how each was made; returns the digest and, per node type, how many nodes were merged away.
    """
    types = {n: str(d.get("type") or _kind(d)) for n, d in g.nodes(data=True)}
    # 1. a credential that was issued for a task is drawn as part of that task
    group: dict[str, str] = {}
    for u, v in g.edges():
        if types.get(u) == "credential" and types.get(v) == "task" and u not in group:
            group[u] = v
    creds_per_task: dict[str, int] = {}
    for t in group.values():
        creds_per_task[t] = creds_per_task.get(t, 0) + 1
    # 2. weight of each node after grouping: the sum of its edge counts
    weight: dict[str, int] = {}
    for u, v, d in g.edges(data=True):
        for n in (group.get(u, u), group.get(v, v)):
            weight[n] = weight.get(n, 0) + int(d.get("count", 1) or 1)
    by_type: dict[str, list[str]] = {}
    for n in g.nodes:
        if n in group or n == focus:
            continue
        by_type.setdefault(types[n], []).append(n)
    merged: dict[str, int] = {}
    for typ, nodes in by_type.items():
        nodes.sort(key=lambda n: (-weight.get(n, 0), str(n)))
        for n in nodes[top:]:
            group[n] = f"more:{typ}"
        if len(nodes) > top:
            merged[typ] = len(nodes) - top
    # credentials grouped into a task that was itself merged follow it
    for c, t in list(group.items()):
        if t in group:
            group[c] = group[t]
    h = nx.MultiDiGraph(**g.graph)
    for n in g.nodes:
        m = group.get(n, n)
        if m in h:
            continue
        if m.startswith("more:"):
            typ = m[len("more:"):]
            h.add_node(m, type=typ, label=f"+{merged.get(typ, 0)} more {plural(typ)}", merged=merged.get(typ, 0))
        else:
            attrs = dict(g.nodes[m])
            if m in creds_per_task:
                attrs["label"] = f"{attrs.get('label', m)} · {creds_per_task[m]} cred."
                attrs["credentials"] = creds_per_task[m]
            h.add_node(m, **attrs)
    for u, v, d in g.edges(data=True):
        a, b = group.get(u, u), group.get(v, v)
        if a == b:
            continue
        kind = str(d.get("kind", ""))
        if h.has_edge(a, b, kind):
            e = h.edges[a, b, kind]
            e["count"] += int(d.get("count", 1) or 1)
            e["first_seen"] = min(e["first_seen"], str(d.get("first_seen", "")))
            e["last_seen"] = max(e["last_seen"], str(d.get("last_seen", "")))
            if d.get("how") and d["how"] not in e["how"].split("; "):
                e["how"] += "; " + d["how"]
        else:
            h.add_edge(a, b, key=kind, kind=kind, how=str(d.get("how", "")), count=int(d.get("count", 1) or 1),
                       first_seen=str(d.get("first_seen", "")), last_seen=str(d.get("last_seen", "")))
    for n in h.nodes:
        label = str(h.nodes[n].get("label") or n)
        h.nodes[n]["label"] = label if len(label) <= DIGEST_LABEL else "…" + label[-(DIGEST_LABEL - 1):]
        h.nodes[n]["col"] = 1 if n == focus else DIGEST_COLUMNS.get(str(h.nodes[n].get("type")), 2)
        h.nodes[n]["rank"] = -weight.get(n, 0) if not str(n).startswith("more:") else 1
    return h, merged


def plural(node_type: str) -> str:
    """``identity`` → ``identities``, ``policy_version`` → ``policy versions``."""
    word = node_type.replace("_", " ")
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def layout(g: nx.Graph) -> dict[Any, tuple[float, float]]:
    """Layered left-to-right for a DAG (paths), force-directed otherwise; coordinates in 0..1000."""
    if g.number_of_nodes() == 0:
        return {}
    if all("col" in d for _, d in g.nodes(data=True)):
        cols: dict[int, list[Any]] = {}
        for n, d in g.nodes(data=True):
            cols.setdefault(int(d["col"]), []).append(n)
        out: dict[Any, tuple[float, float]] = {}
        for c, members in cols.items():
            members.sort(key=lambda n: (str(g.nodes[n].get("type")), g.nodes[n].get("rank", 0), str(n)))
            for y, n in enumerate(members):
                out[n] = (c * 185.0, (y - (len(members) - 1) / 2) * 52.0)
        return out
    simple = nx.DiGraph(g) if g.is_directed() else nx.Graph(g)
    if simple.is_directed() and nx.is_directed_acyclic_graph(simple) and g.number_of_nodes() <= 60:
        pos: dict[Any, tuple[float, float]] = {}
        gens = list(nx.topological_generations(simple))
        for x, gen in enumerate(gens):
            for y, n in enumerate(sorted(gen, key=str)):
                pos[n] = (x * 220.0, (y - (len(gen) - 1) / 2) * 110.0)
    else:
        k = 1.6 / math.sqrt(max(g.number_of_nodes(), 1))
        raw = nx.spring_layout(simple.to_undirected(), seed=7, k=k, iterations=60 if g.number_of_nodes() > 150 else 120)
        pos = {n: (float(p[0]) * 500.0, float(p[1]) * 500.0) for n, p in raw.items()}
    return pos


def graph_payload(g: nx.Graph, focus: Iterable[str] = ()) -> dict[str, Any]:
    """Nodes and edges with positions and details, ready for the page script."""
    focus = [str(f) for f in focus]
    g, dropped = trim(g, focus)
    pos = layout(g)
    nodes = []
    for n, attrs in g.nodes(data=True):
        kind = _kind(attrs)
        label = str(attrs.get("label") or n)
        nodes.append({"id": str(n), "kind": kind, "label": label if len(label) <= 34 else "…" + label[-33:],
                      "x": pos[n][0], "y": pos[n][1], "focus": str(n) in focus,
                      "colour": KIND_COLOURS.get(kind, "#334155"),
                      "attrs": {k: _plain(v) for k, v in attrs.items() if k not in ("col", "rank")}})
    edges = []
    it = g.edges(data=True, keys=True) if g.is_multigraph() else ((u, v, None, d) for u, v, d in g.edges(data=True))
    for u, v, _key, attrs in it:
        edges.append({"from": str(u), "to": str(v), "kind": str(attrs.get("kind") or attrs.get("type") or ""),
                      "attrs": {k: _plain(x) for k, x in attrs.items()}})
    return {"nodes": nodes, "edges": edges, "dropped": dropped, "directed": g.is_directed()}


def links_graph(links: Iterable[Mapping[str, Any]], kinds: Mapping[str, str] | None = None) -> nx.MultiDiGraph:
    """A graph from evidence links ``{"from", "to", "kind", "how"}`` (a decision path or an alert's proof)."""
    g = nx.MultiDiGraph()
    for link in links:
        src, dst = str(link.get("from")), str(link.get("to"))
        for n in (src, dst):
            if n not in g:
                g.add_node(n, kind=(kinds or {}).get(n) or guess_kind(n))
        g.add_edge(src, dst, kind=str(link.get("kind") or ""), how=str(link.get("how") or ""))
    return g


def guess_kind(node_id: str) -> str:
    """A node kind from an id's prefix (``credential:...``, ``spiffe://``, ``arn:...:role/``)."""
    head = node_id.split(":", 1)[0].lower()
    if head in KIND_COLOURS:
        return head
    if node_id.startswith("spiffe://"):
        return "agent" if "/agent/" in node_id else "workload"
    if ":role/" in node_id:
        return "role"
    if "@" in node_id:
        return "human"
    if node_id.startswith(("jti-", "sha256:", "AKIA", "ASIA")):
        return "credential"
    if head in ("mcp", "opa", "keycloak", "spire", "vault", "cloudtrail", "okta", "entra", "k8s_audit", "gcp_audit"):
        return "event"
    return "node"


_HTML = """<!doctype html><html><head><meta charset="utf-8"><style>
html,body{margin:0;height:100%;font:13px system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#0f172a}
#wrap{display:flex;height:100%}#stage{flex:1;position:relative;border:1px solid #e2e8f0;border-radius:6px;overflow:hidden;background:#fff}
svg{width:100%;height:100%;cursor:grab;user-select:none}svg.drag{cursor:grabbing}
#bar{position:absolute;top:6px;left:6px;display:flex;gap:4px}#bar button{border:1px solid #cbd5e1;background:#f8fafc;border-radius:4px;padding:2px 8px;cursor:pointer}
#side{width:290px;margin-left:8px;overflow:auto;border:1px solid #e2e8f0;border-radius:6px;padding:8px;background:#f8fafc}
#side h4{margin:0 0 6px 0;word-break:break-all}#side table{border-collapse:collapse;width:100%}#side td{vertical-align:top;padding:2px 4px;border-bottom:1px solid #e2e8f0;word-break:break-all}
#side td:first-child{color:#475569;white-space:nowrap}.legend{position:absolute;bottom:6px;left:6px;background:#ffffffd0;padding:2px 6px;border-radius:4px;font-size:11px}
.legend span{display:inline-block;width:9px;height:9px;border-radius:50%;margin:0 3px 0 8px}
text{pointer-events:none;font-size:11px;fill:#0f172a}.el{font-size:9px;fill:#64748b}
</style></head><body><div id="wrap"><div id="stage"><svg id="svg" role="img" aria-label="decision graph"><defs>
<marker id="arr" viewBox="0 0 10 10" refX="19" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#94a3b8"/></marker>
</defs><g id="vp"></g></svg><div id="bar"><button id="zin" title="zoom in">+</button><button id="zout" title="zoom out">−</button><button id="fit" title="fit">fit</button></div>
<div class="legend" id="legend"></div></div><div id="side"><h4 id="title">Click a node or an edge</h4><div id="meta"></div><table id="details"></table></div></div>
<script id="data" type="application/json">__DATA__</script>
<script>
(function(){
const D=JSON.parse(document.getElementById('data').textContent);
const NS='http://www.w3.org/2000/svg',svg=document.getElementById('svg'),vp=document.getElementById('vp');
const byId={};D.nodes.forEach(n=>byId[n.id]=n);
let T={x:0,y:0,k:1};
function apply(){vp.setAttribute('transform','translate('+T.x+','+T.y+') scale('+T.k+')');}
function el(t,a){const e=document.createElementNS(NS,t);for(const k in a)e.setAttribute(k,a[k]);return e;}
const pair={};
D.edges.forEach((e,i)=>{const a=byId[e.from],b=byId[e.to];if(!a||!b)return;
  const key=[e.from,e.to].sort().join('\\u0000');const nth=(pair[key]=(pair[key]||0)+1)-1;
  const mx=(a.x+b.x)/2,my=(a.y+b.y)/2,dx=b.x-a.x,dy=b.y-a.y,len=Math.hypot(dx,dy)||1,off=nth*18*(nth%2?1:-1);
  const cx=mx-dy/len*off,cy=my+dx/len*off;
  const p=el('path',{d:'M'+a.x+','+a.y+' Q'+cx+','+cy+' '+b.x+','+b.y,fill:'none',stroke:'#94a3b8','stroke-width':1.4,'marker-end':D.directed?'url(#arr)':''});
  p.style.cursor='pointer';p.addEventListener('click',ev=>{ev.stopPropagation();showEdge(e);});
  const hit=el('path',{d:p.getAttribute('d'),fill:'none',stroke:'transparent','stroke-width':8});hit.style.cursor='pointer';
  hit.addEventListener('click',ev=>{ev.stopPropagation();showEdge(e);});
  vp.appendChild(p);vp.appendChild(hit);
  if(e.kind&&D.edges.length<=120){const t=el('text',{x:(mx+cx)/2,y:(my+cy)/2-3,'text-anchor':'middle',class:'el'});t.textContent=e.kind;vp.appendChild(t);}
});
const circles={};
D.nodes.forEach(n=>{const g=el('g',{'data-id':n.id});g.style.cursor='pointer';
  const c=el('circle',{cx:n.x,cy:n.y,r:n.focus?13:9,fill:n.colour,stroke:n.focus?'#0f172a':'#fff','stroke-width':n.focus?3:1.5});
  const t=el('text',{x:n.x,y:n.y+(n.focus?26:21),'text-anchor':'middle'});t.textContent=n.label;
  const tt=el('title',{});tt.textContent=n.kind+': '+n.id;g.appendChild(tt);
  g.appendChild(c);g.appendChild(t);g.addEventListener('click',ev=>{ev.stopPropagation();showNode(n);});
  vp.appendChild(g);circles[n.id]=c;});
const kinds=[...new Set(D.nodes.map(n=>n.kind))];const lg=document.getElementById('legend');
kinds.forEach(k=>{const s=document.createElement('span');s.style.background=(D.nodes.find(n=>n.kind===k)||{}).colour;lg.appendChild(s);lg.appendChild(document.createTextNode(k));});
if(D.dropped){lg.appendChild(document.createTextNode('  (+'+D.dropped+' nodes not drawn)'));}
function rows(obj){const tb=document.getElementById('details');tb.textContent='';
  Object.keys(obj).forEach(k=>{const v=obj[k];if(v===null||v===undefined||v==='')return;const tr=document.createElement('tr');
    const a=document.createElement('td');a.textContent=k;const b=document.createElement('td');
    b.textContent=typeof v==='object'?JSON.stringify(v):String(v);tr.appendChild(a);tr.appendChild(b);tb.appendChild(tr);});}
let sel=null;
function showNode(n){if(sel)sel.setAttribute('stroke-width',sel._w);sel=circles[n.id];sel._w=sel.getAttribute('stroke-width');sel.setAttribute('stroke-width',4);
  document.getElementById('title').textContent=n.id;
  const out=D.edges.filter(e=>e.from===n.id).length,inn=D.edges.filter(e=>e.to===n.id).length;
  document.getElementById('meta').textContent=n.kind+' · '+inn+' in · '+out+' out';rows(n.attrs);}
function showEdge(e){document.getElementById('title').textContent=e.from+' → '+e.to;
  document.getElementById('meta').textContent='edge '+(e.kind||'');rows(e.attrs);}
function fit(){const b=vp.getBBox(),W=svg.clientWidth||800,H=svg.clientHeight||500;if(!b.width&&!b.height){T={x:W/2-b.x,y:H/2-b.y,k:1};apply();return;}
  const k=Math.min(2,0.9*Math.min(W/(b.width||1),H/(b.height||1)));T={k:k,x:W/2-k*(b.x+b.width/2),y:H/2-k*(b.y+b.height/2)};apply();}
function zoom(f,cx,cy){const W=svg.clientWidth,H=svg.clientHeight;cx=cx===undefined?W/2:cx;cy=cy===undefined?H/2:cy;
  const k=Math.max(0.05,Math.min(8,T.k*f));T.x=cx-(cx-T.x)*k/T.k;T.y=cy-(cy-T.y)*k/T.k;T.k=k;apply();}
svg.addEventListener('wheel',ev=>{ev.preventDefault();const r=svg.getBoundingClientRect();zoom(ev.deltaY<0?1.15:1/1.15,ev.clientX-r.left,ev.clientY-r.top);},{passive:false});
let drag=null;svg.addEventListener('mousedown',ev=>{drag={x:ev.clientX,y:ev.clientY,tx:T.x,ty:T.y};svg.classList.add('drag');});
window.addEventListener('mousemove',ev=>{if(!drag)return;T.x=drag.tx+ev.clientX-drag.x;T.y=drag.ty+ev.clientY-drag.y;apply();});
window.addEventListener('mouseup',()=>{drag=null;svg.classList.remove('drag');});
document.getElementById('zin').onclick=()=>zoom(1.25);document.getElementById('zout').onclick=()=>zoom(0.8);document.getElementById('fit').onclick=fit;
fit();const f=D.nodes.find(n=>n.focus);if(f)showNode(f);
})();
</script></body></html>"""


def graph_html(g: nx.Graph, focus: Iterable[str] = ()) -> str:
    """The whole component page for ``g`` (no external resource of any kind)."""
    data = json.dumps(graph_payload(g, focus), default=str).replace("<", "\\u003c").replace(">", "\\u003e")
    return _HTML.replace("__DATA__", data)


def show_graph(g: nx.Graph, focus: Iterable[str] = (), height: int = 520) -> None:
    """Draw ``g`` in the page (Streamlit front end only; the logic above is testable without it)."""
    import streamlit as st

    if g.number_of_nodes() == 0:
        st.info("Nothing to draw: the graph is empty for this selection.")
        return
    if hasattr(st, "iframe"):
        st.iframe(graph_html(g, focus), height=height)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(graph_html(g, focus), height=height, scrolling=False)
