"""Checks of untrusted JSON values never crash on values JSON allows."""

import pytest

from microgrid.common.fields import FieldProblem, check_kw


def test_an_integer_too_large_for_a_float_is_a_field_problem_not_a_crash():
    with pytest.raises(FieldProblem):
        check_kw(10**400)
