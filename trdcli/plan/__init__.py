"""Before and around runs: what a run will cost (``estimate``), and many runs side by side (``compare``)."""
