import pytest

from tasks.robot import make


@pytest.fixture(scope="module")
def env(request):
    """The env of the test module's task (its ``TASK`` id), 32 px images, shared by the module's tests."""
    e = make(request.module.TASK, image_size=32)
    yield e
    e.close()
