from rollback_verifier.cli.main import main

raise SystemExit(main())
