"""Stages of the workflow, one module per rules file (``workflow/rules/NAME.smk``).

A stage function reads files, takes config sections, calls the physics and learning modules
of the package and writes its outputs atomically; each module states its file contract at
the top. Stages never import matplotlib; plots (:mod:`clustersbi.plots`) never import stages.
"""
