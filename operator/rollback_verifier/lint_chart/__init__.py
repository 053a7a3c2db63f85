"""`rollback-verifier lint-chart`: is it safe to roll this chart change back?

A pure core (`model`, `gating`, `rules`) compares two rendered versions of a chart; a thin shell
(`render` runs real helm, `git` extracts a chart at a git ref, `command` is the CLI) feeds it.
"""
