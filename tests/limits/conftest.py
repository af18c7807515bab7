import pytest

from microgrid.limits.api.serializers import policy_input


@pytest.fixture
def create_limit(microgrid):
    from microgrid.limits.services import limit_policy_create

    def create(**data):
        return limit_policy_create(microgrid=microgrid, **policy_input(data))

    return create


@pytest.fixture
def row_counts():
    """How many policy rows and history rows exist: nothing may change on an error."""
    from microgrid.limits.models import LimitPolicy

    def counts():
        return (LimitPolicy.objects.count(), LimitPolicy.history.count())

    return counts
