"""Errors every layer shows to people: a stable English code and a Chinese message.

Bureau staff and enterprises read ``message``; programs, tests and logs key on
``code``. ``str(error)`` is the Chinese message so that classic xlwings, the CLI
and xlwings Server all show the same text without knowing these classes.
"""

from __future__ import annotations

from typing import Any


class LanxiError(Exception):
    """Base of every error lanxi-xl raises on purpose."""

    code: str = "LANXI_ERROR"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **{k: str(v) for k, v in self.details.items()}}


class InputError(LanxiError, ValueError):
    """A declared figure, choice or year the engine cannot accept."""


class PolicyFileError(LanxiError):
    """The policy data file is unreadable or malformed; ``key`` names the bad key."""

    def __init__(self, code: str, message: str, *, key: str = "", path: str = "") -> None:
        super().__init__(code, message, key=key, path=path)
        self.key = key
        self.path = path
