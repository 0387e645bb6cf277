"""Write the design table (one row per mock) for inspection."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.design import DesignSpec, design_table
from clustersbi.io import atomic_path

table = design_table(DesignSpec.from_config(snakemake.params.config))
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False, float_format="%.8g")
print(f"{len(table)} mocks, splits: {table['split'].value_counts().to_dict()}", file=sys.stderr)
