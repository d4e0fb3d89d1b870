"""Figures: label overlays and montages (overlay), run plots (plots) and the data exploration report
(eda).

Only data.labels and the atomic writers are imported from the rest of the package, so any stage may
draw.
"""
