"""The run folder, written by rank 0 alone: the recorder and its rows (`recorder`, `metrics`),
the folder's lifecycle (`rundir`), checkpoints and resume rules (`checkpoint`, `resume`),
error-feedback residuals, the exported model (`export`) and provenance."""
