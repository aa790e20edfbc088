"""Parity with SSSegmentation 1.7.0 (``nox -s parity``); not part of the segkit package or its default tests."""
