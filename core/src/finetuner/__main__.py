from finetuner.cli import main

raise SystemExit(main())
