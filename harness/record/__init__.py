"""The record of a run: the typed report tree (``tree``), its one JSON form (``codec``), the run
folder every file of a run is written through (``folder``) and the recorder the stages fill
(``report``)."""
