"""The data half of the improvement loop: interaction log, feedback API, expert review, curated datasets.

Everything is stored in :mod:`treadle.store`; docs/FEEDBACK.md describes the data model and the API.
"""
