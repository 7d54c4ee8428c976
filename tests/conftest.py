import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import make_bert, make_gpt2  # noqa: E402

from kn_core.model.loading import load_model  # noqa: E402


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
