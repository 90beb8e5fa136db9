"""One error type for everything a user can get wrong, so the CLI can print it without a traceback."""

from __future__ import annotations

from pathlib import Path


class SketchdownError(Exception):
    """A problem with the user's input or environment, stated in one line."""


class InputError(SketchdownError):
    """A file or value that cannot be used: names the source and the problem."""

    def __init__(self, source: str | Path | None, problem: str) -> None:
        self.source = str(source) if source is not None else None
        self.problem = " ".join(problem.split())  # one line, whatever a library's message held
        super().__init__(f"{self.source}: {self.problem}" if self.source else self.problem)


class MissingWeightsError(SketchdownError):
    """Pretrained weights are not in the local cache; the message names the setup step that provides them."""
