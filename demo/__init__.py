"""The demo: `python -m demo` (make demo)."""
