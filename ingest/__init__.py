"""decisionpath ingest: the canonical event contract, parsers, collectors and the lake writer."""
