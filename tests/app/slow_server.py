"""The app with a slow model stand-in, for the tests of the background worker: every attribution first sleeps
``$KN_SLOW_S`` seconds (the demo model then behaves like a large one) and, when ``$KN_SLOW_LOG`` names a file,
appends its template there (one line per computation). The worker's and the measurer's log (debug: what they
take, drop and store) goes to the server's output. Arguments go to ``streamlit run app.py``."""
import logging
import os
import sys
import time

from streamlit.web import cli

from kn_core.runs import cached

_compute = cached.compute


def slow_compute(lm, prompt, *args, **kwargs):
    if os.environ.get("KN_SLOW_LOG"):
        with open(os.environ["KN_SLOW_LOG"], "a", encoding="utf-8") as log:
            log.write(prompt.template + "\n")
    time.sleep(float(os.environ.get("KN_SLOW_S", "3")))
    return _compute(lm, prompt, *args, **kwargs)


cached.compute = slow_compute
for name in ("kn_core.runs.worker", "kn_core.runs.measurer"):
    logging.getLogger(name).setLevel(logging.DEBUG)
sys.argv = ["streamlit", "run", "app.py", *sys.argv[1:]]
sys.exit(cli.main())
