"""Results across runs: the experiment table appended by each run, the study's results table, and
labels."""
