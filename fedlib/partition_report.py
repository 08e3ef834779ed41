"""The old name of the partition heatmap, for notebooks/03 alone: the committed lab record ran it
before the package was regrouped, and its code must match the source notebook's (`fedlib record
--check`). The function lives in `fedlib.lab.figures`; this forward goes when the record is next
made, with 03 importing from there."""

from .lab.figures import plot_label_heatmap

__all__ = ["plot_label_heatmap"]
