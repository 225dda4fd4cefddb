"""What a run shows and writes: the results record, console tables, plots, HTML page, image grids (over stats)."""
