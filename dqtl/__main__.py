from dqtl.cli.main import main

raise SystemExit(main())
