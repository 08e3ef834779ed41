"""The notebook side: ipyparallel MPI `engines`, parameter `sweep`s, `reproduce` (papermill),
`figures`, and the `scaling` model fitted to measured rounds. Notebooks import from here; the
learning core never does."""
