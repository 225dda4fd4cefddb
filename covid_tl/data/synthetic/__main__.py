from covid_tl.data.synthetic.preview import main

raise SystemExit(main())
