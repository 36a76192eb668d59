"""Old home of the interference heat map, now drawn by :mod:`cachesim.figures`.

Kept only because ``cachesim.cli`` still imports ``tenant_heatmap`` from here; remove once the cli package
imports it from :mod:`cachesim.figures`.
"""

from cachesim.figures import tenant_heatmap

__all__ = ["tenant_heatmap"]
