"""Render the canonical event schema as Markdown: ``python -m ingest.schema_doc > docs/schema.md``.

The schema's own field descriptions are the documentation; a test keeps docs/schema.md in step.
"""

from __future__ import annotations

from ingest.events import DEAD_LETTER_SCHEMA, FIELDS, SCHEMA_VERSION


def render() -> str:
    lines = [
        f"# Canonical event schema (version {SCHEMA_VERSION})",
        "",
        "Generated from `ingest/events.py` by `python -m ingest.schema_doc`; do not edit by hand.",
        "Names follow OCSF where OCSF has one. Credential fields hold fingerprints, never secrets.",
        "",
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    for f in FIELDS:
        lines.append(f"| `{f.name}` | `{f.type}` | {'yes' if f.required else ''} | {f.doc} |")
    lines += ["", "## Dead-letter", "", "| field | type |", "|---|---|"]
    for fld in DEAD_LETTER_SCHEMA:
        lines.append(f"| `{fld.name}` | `{fld.type}` |")
    lines += [
        "",
        "`origin` is the source position (`file:<path>:<line>`, `file:<path>:[<index>]` for JSON arrays, "
        "`#<n>` for the n-th record of an envelope, or `kafka:<topic>/<partition>@<offset>`); `raw` is the "
        "record with secrets redacted, its first 64 KiB for oversized records (`raw_size` and `raw_sha256` "
        "describe the whole).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
