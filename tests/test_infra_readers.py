"""tests/infra_readers: the parsers on small inputs."""

import pytest

from tests.infra_readers.dockerfile import healthcheck_command, stages
from tests.infra_readers.hcl import blocks, strip_meta
from tests.infra_readers.promql import metric_names, selectors


def test_promql_parsing_is_not_vacuous():
    expr = (
        'sum by (namespace, le) (rate(a_total{job="x", status=~"5.."}[5m])) / on (namespace) '
        'b_bucket{le="+Inf"} > 0.5 and absent(up{job="y"}) or vector(1e3)'
    )
    assert metric_names(expr) == {"a_total", "b_bucket", "up"}
    assert [n for n, _ in selectors(expr)] == ["a_total", "b_bucket", "up"]
    assert selectors(expr)[0][1] == 'a_total{job="x",status=~"5.."}'
    with pytest.raises(ValueError, match="unknown function"):
        metric_names("sum(rate_of(x{}))")
    with pytest.raises(AssertionError, match="a selector without"):
        selectors("sum(rate(x[5m]))")


def test_dockerfile_stages_join_continuations_and_drop_comments():
    text = """# syntax comment
ARG BASE=python
FROM ${BASE} AS build
RUN pip install\\
    --quiet x
FROM ${BASE} AS runtime
  # indented comment
HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]
"""
    build, runtime = stages(text)
    assert build == [("FROM", "${BASE} AS build"), ("RUN", "pip install    --quiet x")]
    assert runtime[0] == ("FROM", "${BASE} AS runtime") and len(runtime) == 2
    assert healthcheck_command(runtime) == ["python", "-c", "print(1)"]


def test_hcl_blocks_are_plain():
    parsed = {"main.tf": {"variable": [{'"region"': {"type": "${string}", "__is_block__": True}}]}}
    assert blocks(parsed, "variable") == {"region": {"type": "string"}}
    assert strip_meta(['"a"', "${var.b}", 3]) == ["a", "var.b", 3]
