from model_steps.expectations import main

raise SystemExit(main())
