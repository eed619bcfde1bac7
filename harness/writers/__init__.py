"""The writers of a run's files and console output, each a listener on the typed report tree
(``record.tree.RunReport``) the way TFLite's benchmark tool hands its results to listeners:
``markdown`` (report.md), ``html`` (report.html), ``junit`` (JUnit XML), ``console`` (the
summary), ``compare_text`` (compare.txt), ``history_html`` / ``history_text`` (the nightly
trends). None of them reads a dict by key; none writes a file but through ``record.folder``.

Importing this package imports nothing heavy: matplotlib is loaded only when a page is drawn."""
