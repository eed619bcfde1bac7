"""The run's flow: one model through its stages (``model``), and on one device (``device``)."""
