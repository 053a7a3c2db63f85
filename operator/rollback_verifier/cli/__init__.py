"""The command line: `rollback-verifier` (main.py loads one module per subcommand) and `kubectl rbv`."""
