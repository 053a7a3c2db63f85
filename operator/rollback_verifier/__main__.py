from rollback_verifier.cli import main

raise SystemExit(main())
