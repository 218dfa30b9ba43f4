from __future__ import annotations

import sqlalchemy as sa


def test_database_url_is_reachable(database_url: str) -> None:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    engine.dispose()
