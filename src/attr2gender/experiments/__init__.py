"""The experiments layer: planning a run (and the synthetic-data fallback), one pipeline run, and the
comparison of both routes. The command line (:mod:`attr2gender.cli`) drives it; ``pipelines/*.py`` are thin
scripts over the command line."""
