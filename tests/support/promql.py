"""Which metrics and vector selectors a PromQL expression uses: enough of PromQL for the alert
rules and the dashboard, and a loud failure on a function it does not know."""

import re

PROMQL_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "abs", "absent", "clamp_min",
    "clamp_max", "delta", "deriv", "histogram_quantile", "increase", "irate", "label_replace", "max_over_time",
    "min_over_time", "avg_over_time", "rate", "round", "vector", "scalar", "time",
}  # fmt: skip
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def _without_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr):
    """Metric names in a PromQL expression; fails on a function this parser does not know."""
    text = _without_strings(expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if re.match(r"\s*\(", text[match.end() :]):
            assert word in PROMQL_FUNCTIONS, f"unknown PromQL function {word} in {expr}"
        elif word not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def selectors(expr):
    """(metric name, selector text) of every vector selector; each must carry label matchers."""
    found = re.findall(r'(?<![\w.$])([A-Za-z_:][\w:]*)(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})', expr)
    assert {name for name, _ in found} == metric_names(expr), f"a selector without {{...}} in {expr}"
    return [(name, name + matchers) for name, matchers in found]
