from covid_tl.data.synthetic.gallery import main

raise SystemExit(main())
