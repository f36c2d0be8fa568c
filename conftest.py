"""pytest collects the package's doctests too (``--doctest-modules``); the optional extra's module is
skipped where its dependency (Dask) is not installed, as its tests are."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["poolcli/dask.py"]
