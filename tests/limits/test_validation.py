"""The pure policy validator never crashes, whatever JSON it is given."""

from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.limits.api.serializers import parse_policy
from microgrid.limits.validation import NodeFacts, check_rules

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["NODE", "MICROGRID", "sb-1", "MON", "17:00", "21:00"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
policy_like = st.fixed_dictionaries(
    {},
    optional={
        "scope": json_values,
        "node_id": json_values,
        "limit_kw": json_values,
        "schedule": json_values
        | st.fixed_dictionaries(
            {}, optional={"days": json_values, "start": json_values, "end": json_values}
        ),
        "source": json_values,
    },
)
FACTS = NodeFacts(ratings={"grid": 800.0, "sb-1": 400.0}, root_id="grid")


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, policy_like))
def test_any_input_is_either_a_clean_policy_or_field_errors(raw):
    spec, errors = parse_policy(raw)
    assert (spec is None) == bool(errors)
    assert all(e.code == "FIELD_INVALID" for e in errors)
    assert all(e.field is not None for e in errors) or not isinstance(raw, dict)
    if spec is not None:
        problems, conflicts = check_rules(spec, FACTS, [spec.with_id("LP-1")])
        assert all(
            e.code in {"NODE_NOT_FOUND", "LIMIT_EXCEEDS_PHYSICAL_RATING", "LIMIT_SCHEDULE_OVERLAP"}
            for e in problems
        )
        assert all(e.code == "LIMIT_ALREADY_EXISTS" for e in conflicts)
