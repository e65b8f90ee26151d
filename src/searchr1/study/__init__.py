"""``searchr1 study``: the paper's findings on SearchWorld, over seeds, with bootstrap confidence intervals."""
