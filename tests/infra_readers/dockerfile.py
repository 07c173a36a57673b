"""docker/Dockerfile read with dockerfile-parse (continuation lines joined, comments dropped)."""

import io
import json

from dockerfile_parse import DockerfileParser


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, in order."""
    parsed = DockerfileParser(fileobj=io.StringIO(text))
    return [(entry["instruction"], entry["value"]) for entry in parsed.structure if entry["instruction"] != "COMMENT"]


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages: lists of (INSTRUCTION, arguments), each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def exec_form(arguments: str) -> list[str]:
    """A JSON exec-form argument list (CMD, HEALTHCHECK CMD)."""
    return json.loads(arguments)


def healthcheck_command(stage: list[tuple[str, str]]) -> list[str]:
    (arguments,) = [args for name, args in stage if name == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD") + len("CMD") :].strip())
