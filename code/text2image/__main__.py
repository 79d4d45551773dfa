from text2image.cli import main

raise SystemExit(main())
