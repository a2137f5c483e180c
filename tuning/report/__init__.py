"""Reports: ``python -m tuning.report`` (the offline HTML realism report), its figures, and the files plumbing
shared by the P0 / POPT / report CLIs."""
