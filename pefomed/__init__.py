"""pefomed: medical vision-language fine-tuning, from raw public data to honest numbers.

The package is importable without pulling in torch: heavy modules are imported where used.
"""

__version__ = "0.1.0"
