import os
from pathlib import Path

import pytest
import torch

from helpers import make_bert, make_gpt2

from kn_core.model.loading import load_model


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory) -> Path:
    """No test reads or writes the user's real result store: $KN_EXPLORER_HOME points into a temp folder."""
    home = tmp_path_factory.mktemp("kn-home")
    previous = os.environ.get("KN_EXPLORER_HOME")
    os.environ["KN_EXPLORER_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("KN_EXPLORER_HOME", None)
    else:
        os.environ["KN_EXPLORER_HOME"] = previous


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def bert(bert_dir):
    return load_model(str(bert_dir))


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    return load_model(str(gpt2_dir))


@pytest.fixture(scope="session", params=["bert", "gpt2"])
def lm(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def one_thread():
    """Models this small run fastest on one thread (and two threads crawl on a busy two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Test tiers (pytest.ini names the markers; `make test-fast` leaves out all four): files whose every test needs
# a browser, a Ray cluster, or minutes of CPU are marked here, by file, so that a new test there is marked too.
TIERS = {"browser": ("app/test_browser.py", "app/test_turns.py"),
         "ray": ("runs/test_ray_cluster.py",),
         "slow": ("runs/test_batch.py", "runs/test_batch_claims.py", "demo/test_demo.py", "model/test_install.py",
                  "cli/test_experiments.py", "bench/test_bench_smoke.py", "runs/test_worker.py")}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.fspath)).resolve()
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else ""
        for marker, files in TIERS.items():
            if relative in files:
                item.add_marker(getattr(pytest.mark, marker))
