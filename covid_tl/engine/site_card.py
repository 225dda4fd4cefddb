"""A site profile's section of a model card (calibrate_site.py writes the training run's card
with it): the site's cut, how it was chosen, and every rate it reports, each at the cut it
names; the card's own promise that every rate is at the training threshold names the exception.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from covid_tl.core.formatting import markdown_table, median_range, number
from covid_tl.core.labels import POSITIVE
from covid_tl.engine.model_card import EVERY_RATE
from covid_tl.stats.metrics import RATES


def site_section(record: Mapping[str, Any]) -> list[str]:
    """A site profile (calibrate_site.py) as a card section: the site's cut and how it was
    chosen, then every rate it reports, each row naming the cut it is at."""
    point, model = record["operating_point"], record["model"]
    films = record["films"]
    if point.get("method") == "label_free":
        free = record.get("label_free") or {}
        how = (f"without labels, by matching: the cut calls {free.get('share_called', 0):.1%} of the site's films "
               f"{POSITIVE}, the share the model's own cut calls of its {free.get('reference')} films at a prevalence "
               f"of {free.get('prevalence', 0):.2f} ({free.get('prevalence_from')}). {free.get('assumes', '')}")
    else:
        labelled = films.get("labelled_per_class")
        how = (f"by `{point.get('rule')}` on {point.get('n')} labelled films of the site "
               + (f"({labelled} per class, drawn by patient with seed {films.get('seed')}; the others held out)"
                  if labelled else "(all of them: no film is held out)"))
        if record.get("cut_ci95"):
            low, high = record["cut_ci95"]
            how += f"; re-chosen on bootstrap resamples of those films' patients it falls in [{low:.3f}, {high:.3f}] (95%)"
    scaled = (f" Probabilities are at temperature {point['temperature']:.3f}." if point.get("temperature", 1.0) != 1.0
              else "")
    lines = [f"## Operating point at site `{record['site']}`", "",
             f"From site_profile.json (calibrate_site.py, {record.get('created', '?')}), made for this model file "
             f"(sha256 {str(model.get('sha256'))[:12]}); `site=<profile>` gives it to evaluate.py, predict.py and "
             f"explain.py. At this site an image is called {POSITIVE} when its probability is at or above "
             f"**{point['threshold']:.4g}**, chosen {how}.{scaled} {site_films(films)}", ""]
    rows = [[name.replace("_", " "), block["at"], block["n"], *(number(block[m], block.get(f"{m}_ci95")) for m in RATES[:2]),
             number(block["auroc"], (block.get("bootstrap_ci95") or {}).get("auroc"))]
            for name, block in record["rates"].items()]
    lines += markdown_table(["films", "at", "n", *RATES[:2], "auroc"], rows) if rows else []
    per_n = (record.get("how_many_films") or {}).get("per_n") or {}
    if per_n:
        lines += ["", f"What n labelled films per class buy here (how_many_films.png): the median and 5-95% over "
                  f"{record['how_many_films']['resamples']} draws by patient of the rates a "
                  f"`{record['how_many_films']['rule']}` cut from n + n films gives on the site's other films.", ""]
        lines += markdown_table(["n per class", "sensitivity", "specificity", "cut"],
                                [[n, median_range(c["sensitivity"]), median_range(c["specificity"]), median_range(c["cut"])]
                                 for n, c in per_n.items()])
    return lines + [""]


def site_films(films: Mapping[str, Any]) -> str:
    """The site's films in a sentence: labelled ones by class and patients, or unlabelled files."""
    if films.get("n_per_class") is None:
        return (f"{films.get('n')} unlabelled files (`images={films.get('images')}`): no rate can be measured at this "
                "site until some of its films are labelled.")
    classes = ", ".join(f"{k} {v}" for k, v in films["n_per_class"].items())
    return f"{films.get('n')} films of {films.get('patients')} patients ({classes}). Each row below names the cut its rates are at."


def site_card(card: str, record: Mapping[str, Any]) -> str:
    """A training run's model_card.md with a site profile's section at the end; its threshold
    section's promise that every rate is at the training cut names the exception."""
    card = card.replace(EVERY_RATE, EVERY_RATE[:-1] + " (the training run's), except those of the section on site "
                        f"`{record['site']}` at the end, each at the cut its row names.")
    return card.rstrip("\n") + "\n\n" + "\n".join(site_section(record)) + "\n"
