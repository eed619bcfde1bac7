"""The ``qat-harness`` commands, one module per job; ``qat_harness.cli`` builds the parser from
their ``add_parser`` functions and dispatches to their ``cmd_*`` functions.

  run.py        run (and --resume): options -> pipeline.run -> summary and exit code
  nightly.py    nightly: a run recorded in history and compared with the previous one
  layers.py     layers: the layer support matrix
  trace.py      trace: the per-layer trace of a model on devices
  reports.py    compare and history: reading recorded reports
  listing.py    devices and claims: what is installed and what is judged
  device_options.py  the device options' flags and opening the requested devices
  folders.py    new run folders, never shared
  errors.py     exit codes, the one-line error and the crash log"""
