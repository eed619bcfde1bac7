"""Reports people look at and CI reads: ``report.html`` (``html.write_html``), the trends of
the nightly history (``history_html.render_history``, ``history_text.history_text``), JUnit XML
(``junit.write_junit``), and the noise-aware regression rules (``gates``).

Importing this package imports nothing heavy: matplotlib is loaded only when a page is drawn."""
