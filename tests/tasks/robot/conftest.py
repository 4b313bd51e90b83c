import pytest

from vla_rl.envs import make_env


@pytest.fixture(scope="module")
def env(request):
    """The env of the test module's task (its ``TASK`` id), 32 px images, shared by the module's tests."""
    e = make_env(request.module.TASK, image_size=32)
    yield e
    e.close()
