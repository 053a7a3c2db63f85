"""Hypothesis profiles. `full` (the default: `make test`, CI) runs every property test with its own
number of examples; `dev` (`make unit`, `--hypothesis-profile=dev`) a tenth of them, so that the
development loop stays within seconds while CI keeps the full search."""

from __future__ import annotations

from hypothesis import settings

FULL_EXAMPLES = 100  # hypothesis' own default
settings.register_profile("full", max_examples=FULL_EXAMPLES)
settings.register_profile("dev", max_examples=FULL_EXAMPLES // 10)
settings.load_profile("full")


def examples(count: int) -> settings:
    """`count` examples in the full profile, as many fewer in the loaded profile as it has fewer."""
    return settings(max_examples=max(count * settings.default.max_examples // FULL_EXAMPLES, 1))
