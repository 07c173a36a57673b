"""The vector selectors of a PromQL expression, read with promql-parser (Prometheus's grammar):
an unknown function or a syntax error fails the parse."""

import promql_parser


def vector_selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []
    promql_parser.walk(
        promql_parser.parse(expr),
        pre_visit=lambda node: found.append(node) if isinstance(node, promql_parser.VectorSelector) else None,
    )
    return found


def metric_names(expr: str) -> set[str]:
    return {_name(selector) for selector in vector_selectors(expr)}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, selector text) of every vector selector; each must carry label matchers."""
    found = vector_selectors(expr)
    bare = [_name(selector) for selector in found if not selector.matchers.matchers]
    assert not bare, f"a selector without {{...}} in {expr}: {bare}"
    return [(_name(selector), str(selector)) for selector in found]


def _name(selector: promql_parser.VectorSelector) -> str:
    assert selector.name, f"a selector without a metric name: {selector}"
    return selector.name
