"""failcast's benchmarks: `python -m bench` (load, real servers) and `bench/profile_predict.py`."""
