import pytest

from inference import EmbeddedModel, Engine, EngineConfig


@pytest.fixture(scope="session")
def model() -> EmbeddedModel:
    """The real model, loaded once per test session (slow tests only)."""
    return EmbeddedModel.load(threads=2)


@pytest.fixture
async def engine(model):
    eng = Engine(model, EngineConfig(kv_cache_tokens=8192, max_num_batched_tokens=512))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
