"""End-to-end tests: what only a process boundary shows (real `python -m b24_mcp` processes, the Inspector).

Every module here is marked `e2e`; `pytest -m "not e2e"` runs the rest of the suite in a few seconds.
"""

from tests.values import ROOT

__all__ = ["ROOT"]  # still imported from here by tests/test_oauth.py (another owner's file); use tests.values
