"""The `bioscan` command line's sub-commands; each has `--help` with examples."""
