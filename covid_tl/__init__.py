"""covid-tl: transfer learning on chest X-rays, COVID-19 vs no finding, with shortcut checks."""

__version__ = "0.1.0"
