"""Seeded synthetic "phantom" chest X-rays: the embedded default data source.

The phantoms exist so that the whole pipeline (splits, training, transfer learning, shortcut
audits) can run and be tested without downloading anything. They are built to have the
properties the research questions need, not photo-realism:

* a label signal with a known location: COVID-19 images carry bilateral, peripheral,
  lower-zone ground-glass opacities inside the lung fields (``opacity_mask`` says where);
* a controllable shortcut: burned-in marks (letters, arrows, text) planted per class with the
  probabilities of a :class:`ShortcutSpec`, with their exact pixels (``mark_mask``), so that
  saliency and "does the model read the marks?" checks have ground truth;
* patient structure: anatomy is drawn per patient, so follow-up images look alike and a split
  that leaks patients is measurably optimistic.

Everything is a pure function of ``(seed, index)`` (``streams``). Only numpy and OpenCV are
used (no torch). ``anatomy`` draws a patient, ``render`` an image of it, ``marks`` burns in
the shortcut, ``source`` is the data source (named, and optionally stored through a hospital's
imaging chain, ``covid_tl.preprocess.acquisition``: ``data=synthetic_shift``), ``gallery`` the
picture command (``python -m covid_tl.data.synthetic``). The package imports none of its
modules: import them by name (``covid_tl.data.synthetic.source.SyntheticSource``).
"""
