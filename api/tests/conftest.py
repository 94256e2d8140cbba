from pathlib import Path

import pytest

SCHEMA = Path(__file__).resolve().parents[1] / "openapi.yaml"  # the checked-in schema


@pytest.fixture
def caddy_answers(monkeypatch):
    from hosting.backends import caddy

    monkeypatch.setattr(caddy, "_admin", lambda *a, **k: "{}")  # domain changes reach no real Caddy
