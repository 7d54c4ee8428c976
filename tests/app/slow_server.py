"""The app with a slow model stand-in, for the turn-taking test: every attribution first sleeps
``$KN_SLOW_S`` seconds (the demo model then behaves like a large one). Arguments go to ``streamlit run app.py``."""
import os
import sys
import time

from streamlit.web import cli

from kn_core.runs import cached

_compute = cached.compute


def slow_compute(*args, **kwargs):
    time.sleep(float(os.environ.get("KN_SLOW_S", "3")))
    return _compute(*args, **kwargs)


cached.compute = slow_compute
sys.argv = ["streamlit", "run", "app.py", *sys.argv[1:]]
sys.exit(cli.main())
