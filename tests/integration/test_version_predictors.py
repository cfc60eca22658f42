"""The predictors of versions other than the serving one (they explain stored predictions):
verified like the serving one, and only a few kept."""

import pytest
import sqlalchemy as sa
from support import register_version

from graph.runtime.models import OTHER_VERSIONS_KEPT, ModelService
from model import ArtifactIntegrityError
from persistence import NotFound


def test_other_versions_predictors_are_loaded_once_and_only_a_few_kept(db_engine, demo_artifact):
    rows = [
        register_version(db_engine, demo_artifact, f"v-{i}", activate=i == 0)
        for i in range(OTHER_VERSIONS_KEPT + 2)
    ]
    service = ModelService(db_engine)
    serving = service.refresh_sync()
    assert serving is not None and serving.version == "v-0"
    assert service.predictor_for(rows[0].id) is serving.predictor
    first = service.predictor_for(rows[1].id)
    assert first is not serving.predictor and service.predictor_for(rows[1].id) is first
    for row in rows[2:]:  # OTHER_VERSIONS_KEPT more: the least recently asked for leaves
        service.predictor_for(row.id)
    assert service.predictor_for(rows[-1].id) is service.predictor_for(rows[-1].id)
    again = service.predictor_for(rows[1].id)
    assert again is not first and again.feature_names == first.feature_names


def test_another_versions_artifact_is_checked_against_its_digest(db_engine, demo_artifact):
    serving = register_version(db_engine, demo_artifact, "v-1")
    other = register_version(db_engine, demo_artifact, "v-2", activate=False)
    altered = bytearray(demo_artifact)
    altered[len(altered) // 2] ^= 0xFF
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_version SET artifact = :bytes WHERE id = :id"),
            {"bytes": bytes(altered), "id": other.id},
        )
    service = ModelService(db_engine)
    service.refresh_sync()
    assert service.predictor_for(serving.id) is not None
    with pytest.raises(ArtifactIntegrityError):
        service.predictor_for(other.id)
    with pytest.raises(NotFound):
        service.predictor_for(other.id + 1000)
