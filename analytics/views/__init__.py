"""One SQL file per view, loaded in order by analytics.lake."""
