"""From features to results: methods, protocols and metrics, a run and its folder, comparisons, ensembles,
reports, prediction on new images and export."""
