"""``python -m kn_core.model.install convert ...``: the conversion child (:mod:`kn_core.model.install.child`)."""
import sys

from kn_core.model.install.child import _child_main

sys.exit(_child_main(sys.argv[1:]))
