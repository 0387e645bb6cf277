"""clustersbi: simulation-based inference for X-ray galaxy-cluster cosmology.

The package holds every stage of the workflow as plain functions (arrays in, arrays
out); the Snakemake rules in ``workflow/`` only wire files to them.
"""

__version__ = "0.1.0"
