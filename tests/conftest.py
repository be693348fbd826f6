"""Fixtures shared by several test modules: kept small and generic on purpose."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_helpers import Cluster, cluster

from blagh.config import Config, RecipientsConfig
from crypto.keys import AnalystPublicKey, generate_analyst_key


@pytest.fixture(scope="session")
def analyst_public_key() -> AnalystPublicKey:
    """One analyst's public key, made once: generating keys is not what tests are about."""
    return generate_analyst_key().public()


@pytest.fixture
def config(analyst_public_key: AnalystPublicKey) -> Config:
    """The embedded defaults, with one analyst as the only recipient (the one required setting)."""
    return Config(recipients=RecipientsConfig(analysts=(analyst_public_key,)))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One throw-away PostgreSQL cluster for the whole run (tests/postgres_helpers.py); each
    test makes a database of its own in it."""
    with cluster() as made:
        yield made
