"""Predictive propensity models (scikit-learn): point-in-time training, validation, scores in rules.

scikit-learn, scipy and skops are imported inside the functions that fit, validate, explain or
store a model, not at the top of the modules: every process imports this app at start-up (its
scoring of changed contacts is a registered deriver, its admin is autodiscovered), and those
imports took 3 of a `manage.py` command's 7 seconds and ~100 MB of every web and task worker's
memory, which the 1M-row import (target 300 MB) could not spare.
"""
