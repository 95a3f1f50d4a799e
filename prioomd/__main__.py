from prioomd.cli import main

raise SystemExit(main())
