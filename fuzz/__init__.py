"""Fuzzing hbproto: targets shared by the test suite (tests/test_fuzz.py) and the long run
(``python3 fuzz/run.py``)."""
