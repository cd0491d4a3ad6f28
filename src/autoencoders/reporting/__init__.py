"""The last stage: every variant side by side against the baselines, as files and a figure.

``summary`` builds the rows, the quality bar and the markdown; ``stage`` is the ``report``
stage's work (collecting metrics, timings, the comparison figure).
"""
