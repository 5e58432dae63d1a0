"""decisionpath analytics: views, decision paths, graphs, point-in-time answers, detections."""

# DuckDB's memory limit for detection runs (`decisionpath detect` / `schedule`): with the process's own memory
# the whole run stays under 2 GB (10M events: peak RSS 1.71 GiB, against 2.25 GiB at 2GB, in the same time;
# benchmarks/RESULTS.md "Catalog memory").
DETECT_MEMORY_LIMIT = "1.5GB"
