"""The bottom layer: errors, file writing, the class labels, number formatting, provenance; nothing of covid-tl below it."""
