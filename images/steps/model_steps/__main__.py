from model_steps.cli import main

raise SystemExit(main())
