"""Evaluation on a synthetic world: the only package that reads ground truth (``truth/``).

``truth`` (the reader, and the truth view handed to retraining's figures), ``adaptation`` (the
closed-loop study, where truth becomes the simulated exams' outcomes) and ``indicators`` (how
often each indicator family fires on true positives vs the rest). Imported only by the top layer
(CLI, flows, bench); nothing the nightly run or production retraining uses imports it.
"""
