"""The base of every settings section, and the constrained types and path rule they share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def absolute_path(path: Path | None) -> Path | None:
    return None if path is None else Path(path).expanduser().absolute()


class Section(BaseModel):
    """Unknown keys are errors: a typo must never fall back to a default silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)
