"""The server settings `make run` starts the app with (.streamlit/config.toml), read through Streamlit's own
config loader: no garbage collection after each script run (a full collection took a quarter of a second with a
model loaded, after every re-run of a watching fragment, and slowed the background worker) and no source
watcher (it walks every imported module after each run)."""
from pathlib import Path

from streamlit import config

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_runs_without_per_run_collection_or_source_watching(monkeypatch):
    monkeypatch.chdir(ROOT)  # Streamlit reads ./.streamlit/config.toml, where `make run` starts it
    assert (ROOT / ".streamlit" / "config.toml").is_file()
    config.get_config_options(force_reparse=True)
    assert config.get_option("runner.postScriptGC") is False
    assert config.get_option("server.fileWatcherType") == "none"
