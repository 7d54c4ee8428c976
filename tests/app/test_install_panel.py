"""The sidebar offers the real models that are not installed: Gemma's licence needs consent before its button
works; clicking installs through kn_core.model.install with progress (the installer itself is tested in
tests/model/test_install.py; here it is replaced by a recorder)."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

TIMEOUT = 120


def test_install_panel_asks_consent_for_gemma_and_installs(monkeypatch, tmp_path):
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    calls = []

    def fake_install(name, accept_license=False, progress=None, **kwargs):
        calls.append((name, accept_license))
        progress(0.5, "converting")
        return tmp_path

    import kn_core.app.sidebar as sidebar
    monkeypatch.setattr(sidebar, "install", fake_install)
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    buttons = {b.key: b for b in at.sidebar.button}
    assert {"install_smollm2-135m", "install_gemma3-270m"} <= set(buttons)
    assert buttons["install_gemma3-270m"].disabled and not buttons["install_smollm2-135m"].disabled
    assert any("Gemma Terms of Use" in t.value for t in at.sidebar.text)
    at.sidebar.checkbox(key="accept_gemma3-270m").check().run()
    at.sidebar.button(key="install_gemma3-270m").click().run()
    assert calls == [("gemma3-270m", True)]
    assert not at.exception


def test_language_page_offers_the_bilingual_model(monkeypatch, tmp_path):
    """With SmolLM2 (English) chosen and Gemma 3 (en + zh) installed, the language page offers the switch."""
    from kn_core.model.install import list_models

    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    import kn_core.app.sidebar as sidebar

    def installed(*args, **kwargs):
        from dataclasses import replace
        return [replace(status, installed=True) for status in list_models(*args, **kwargs)]

    monkeypatch.setattr(sidebar, "list_models", installed)
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["model_choice"] = "smollm2-135m"
    at.run()
    at.switch_page("views/languages.py")
    at.run()
    assert not at.exception
    at.button(key="switch_zh").click().run()
    assert at.session_state["model_choice"] == "gemma3-270m"
    assert not at.exception
