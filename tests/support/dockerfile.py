"""A Dockerfile read as its instructions and stages: enough for the tests of docker/Dockerfile."""

import json
import re


def instructions(text):
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    uncommented = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    logical = re.sub(r"\\\n\s*", " ", uncommented)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in logical.splitlines()
        if line.strip()
    ]


def stages(text):
    """The Dockerfile's stages: lists of (INSTRUCTION, arguments), each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def exec_form(arguments):
    """A JSON exec-form argument list (CMD, HEALTHCHECK CMD)."""
    return json.loads(arguments)


def healthcheck_command(stage):
    (arguments,) = [args for name, args in stage if name == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD") + len("CMD") :].strip())
