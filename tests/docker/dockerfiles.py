"""A small Dockerfile reader for the static checks: instructions with their arguments, as Docker sees them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_DIRECTIVE = re.compile(r"^#\s*\w+\s*=")


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-case name, raw argument text and the line it starts on."""

    name: str
    text: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON-array ("exec") form of the arguments, after any ``--flag=value`` options.

        Raises:
            ValueError: the arguments are not a JSON array of strings.
        """
        text = self.text
        while text.startswith("--"):
            text = text.split(None, 1)[1] if " " in text else ""
        if self.name == "HEALTHCHECK":
            if not text.startswith("CMD "):
                raise ValueError(f"line {self.line}: HEALTHCHECK without CMD")
            text = text[4:].strip()
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.name} is not a JSON array of strings")
        return value

    def options(self) -> dict[str, str]:
        """Leading ``--name=value`` options (HEALTHCHECK, COPY)."""
        return dict(re.findall(r"--([\w-]+)=(\S+)", self.text.split(" CMD ", 1)[0]))


def parse(path: Path) -> list[Instruction]:
    """Join continuation lines, drop comments and blank lines, split instruction from arguments.

    Raises:
        ValueError: a line does not start with an instruction word, naming the file and line.
    """
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or (stripped.startswith("#") and not _DIRECTIVE.match(stripped))):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        word, _, rest = joined.partition(" ")
        if not re.fullmatch(r"[A-Za-z]+", word):
            raise ValueError(f"{path}:{start}: not an instruction: {joined[:60]!r}")
        out.append(Instruction(word.upper(), rest.strip(), start))
    if pending:
        raise ValueError(f"{path}:{start}: file ends inside a continued line")
    return out


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """Every ``ENV key=value`` pair (later ones win), with simple double-quote removal."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.name == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', ins.text):
                env[key] = value.strip('"')
    return env


def named(instructions: list[Instruction], name: str) -> list[Instruction]:
    return [i for i in instructions if i.name == name]
