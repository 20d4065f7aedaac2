"""Every Ray a test starts listens on loopback only: Ray reads this before it is imported."""

import pytest

from earlyphase.tune.connect import loopback_environment

loopback_environment()


@pytest.fixture(scope="module")
def local_ray():
    """An embedded 2-CPU Ray for a test module's sweeps (imported only when a test asks for it)."""
    import ray

    from earlyphase.tune.connect import start_ray

    start_ray(num_cpus=2)
    yield
    ray.shutdown()
