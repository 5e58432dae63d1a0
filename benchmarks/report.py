"""Markdown tables of a run (one scale) and of growth across scales."""

from __future__ import annotations

from typing import Any

from benchmarks.stats import loglog_slope


def _num(v: float | None) -> str:
    if v is None:
        return "–"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def machine_md(m: dict[str, Any]) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return (f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gib']} GiB; {m['os']}; Python {m['python']}\n"
            f"- load average at start: {m['load_avg_at_start']} (the machine is shared)\n- packages: {pk}\n")


def scale_md(doc: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    ds = doc.get("dataset", {})
    lines = [f"# decisionpath benchmarks: scale {doc['label']} (seed {doc['seed']}, {doc['repeat']} run(s) each)", "",
             f"Command: `{command}`", "", machine_md(machine),
             f"Dataset: {ds.get('records', 0):,} records in {ds.get('data_bytes', 0) / 1e6:,.0f} MB of JSON Lines.", "",
             "| figure | median | min – max | unit | peak RSS MiB |", "|---|---:|---:|---|---:|"]
    for f in doc["figures"].values():
        rss = f.get("peak_rss_mb")
        lines.append(f"| {f['label']} | {_num(f['median'])} | {_num(f['min'])} – {_num(f['max'])} | {f['unit']} | "
                     f"{_num(rss) if rss else ''} |")
    if doc["ratios"]:
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {r['label']} | {r['value']:.2f}× |" for r in doc["ratios"].values()]
    if doc["targets"]:
        lines += ["", "| target | value | met |", "|---|---:|---|"]
        for t in doc["targets"]:
            met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['what']} ({t['ratio']} {t['target']}) | {_num(t['value'])} | {met} |")
    if doc["agreement"]:
        lines += ["", "| baseline | agrees with the product | product findings | baseline findings |", "|---|---|---:|---:|"]
        for k, a in doc["agreement"].items():
            lines.append(f"| {k} | {'yes' if a['agree'] else '**no**: ' + str(a.get('reason', ''))} | "
                         f"{a.get('product', '–')} | {a.get('baseline', '–')} |")
    if doc["notes"]:
        lines += ["", "Notes:", *(f"- {n}" for n in doc["notes"])]
    return "\n".join(lines) + "\n"


def scaling(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per figure: its median at each scale and the log-log slope against the scale."""
    out: dict[str, dict[str, Any]] = {}
    if len(docs) < 2:
        return out
    ids = [k for k in docs[0]["figures"] if all(k in d["figures"] for d in docs)]
    for fid in ids:
        xs = [d["scale"] for d in docs]
        ys = [d["figures"][fid]["median"] for d in docs]
        out[fid] = {"label": docs[0]["figures"][fid]["label"], "unit": docs[0]["figures"][fid]["unit"],
                    "scales": xs, "medians": ys, "exponent": loglog_slope(xs, ys)}
    return out


def scaling_md(sc: dict[str, dict[str, Any]], labels: list[str]) -> str:
    if not sc:
        return ""
    lines = ["# Growth across scales", "",
             "Exponent = slope of log(figure) against log(events): 0 for a rate that holds, 1 for a time that grows "
             "linearly.", "", "| figure | unit | " + " | ".join(labels) + " | exponent |",
             "|---|---|" + "---:|" * (len(labels) + 1)]
    for s in sc.values():
        e = s["exponent"]
        lines.append(f"| {s['label']} | {s['unit']} | " + " | ".join(_num(y) for y in s["medians"])
                     + f" | {'–' if e is None else f'{e:+.2f}'} |")
    return "\n".join(lines) + "\n"
