"""The experiments layer: planning a run (and the synthetic-data fallback, ``plan``), one route's run
(``route_run``), the comparison of both routes in numbers and in words (``comparison_metrics``,
``comparison_report``), running it (``comparison_run``, also over seeds: ``seeds``), and the evaluation and
HTML report they share. The command line (:mod:`attr2gender.cli`) drives it; ``pipelines/*.py`` are thin
scripts over the command line."""
