"""SQL macros shared by the vectorised parsers; each mirrors a Python helper of ``ingest``.

They run on typed columns that ``pyarrow.json`` decoded with a format's explicit schema, so a
string column holds strings only (a record with another type there never reaches the SQL).
"""

from __future__ import annotations

import pyarrow as pa


def struct(**fields: pa.DataType) -> pa.DataType:
    """A struct type for a format's ``pyarrow.json`` schema, fields in the order given."""
    return pa.struct(list(fields.items()))


MACROS: tuple[str, ...] = (
    # sources._fields._s on a string column
    "CREATE OR REPLACE TEMP MACRO s(v) AS nullif(v, '')",
    # sources._fields._words on a string column / on a list-of-strings column
    "CREATE OR REPLACE TEMP MACRO words_str(v) AS "
    "nullif(list_filter(string_split(replace(v, ',', ' '), ' '), lambda x: x <> ''), [])",
    "CREATE OR REPLACE TEMP MACRO words_list(v) AS nullif(list_filter(v, lambda x: x IS NOT NULL AND x <> ''), [])",
    # ingest.events.utc on "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z": Python 3.11 truncates the fraction to microseconds
    "CREATE OR REPLACE TEMP MACRO jtime(v) AS CASE WHEN regexp_full_match(v,"
    " '[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z')"
    " THEN TRY_CAST(substr(v, 1, 10) || ' ' || substr(v, 12, 8) || '.'"
    " || rpad(regexp_extract(v, '\\.([0-9]{1,6})', 1), 6, '0') AS TIMESTAMP) ELSE NULL END",
    # sources.spire.identity_type (on ASCII text)
    "CREATE OR REPLACE TEMP MACRO idtype(a) AS CASE"
    " WHEN a IS NULL OR a = '' THEN NULL"
    " WHEN starts_with(a, 'spiffe://') AND length(a) > 9 THEN (CASE"
    "   WHEN starts_with('/' || CASE WHEN strpos(substr(a, 10), '/') > 0"
    "     THEN substr(substr(a, 10), strpos(substr(a, 10), '/') + 1) ELSE '' END, '/spire/') THEN 'workload'"
    "   WHEN contains('/' || CASE WHEN strpos(substr(a, 10), '/') > 0"
    "     THEN substr(substr(a, 10), strpos(substr(a, 10), '/') + 1) ELSE '' END || '/', '/agent/') THEN 'agent'"
    "   ELSE 'workload' END)"
    " WHEN starts_with(a, 'system:serviceaccount:') THEN 'workload'"
    " WHEN contains(a, '@') AND contains(regexp_extract(a, '@([^@]*)$', 1), '.') AND NOT contains(a, ' ') THEN 'human'"
    " ELSE NULL END",
    # a JSON string member of an attributes object (admitted text has nothing orjson would escape)
    "CREATE OR REPLACE TEMP MACRO jstr_member(k, v) AS CASE WHEN v IS NOT NULL THEN ',\"' || k || '\":\"' || v || '\"' END",
)
