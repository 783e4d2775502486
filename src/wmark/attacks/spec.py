"""The attack registry entry (no torch here: listing the registry stays light)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def check_strength(strength: float) -> float:
    """Validate a strength: a finite float in [0, 1]."""
    s = float(strength)
    if not 0.0 <= s <= 1.0:  # also rejects NaN
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    return s


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack.

    ``fn(x, strength, generator, **extra)`` is the attack; ``mapping(strength)`` gives its natural
    parameter ``param`` (the same function the attack itself uses), ``mapping_doc`` says it in words.
    ``geometric``: the attack moves or resizes pixels (outputs are not pixel-aligned with the input).
    ``identity_at_zero``: strength 0 returns the input (within 1/255).
    ``needs``: keyword arguments the caller must supply (a model, target bits, a vocabulary size ...).
    """

    name: str
    fn: Callable[..., Any]
    param: str
    mapping: Callable[[float], Any]
    mapping_doc: str
    geometric: bool = False
    identity_at_zero: bool = True
    needs: tuple[str, ...] = ()
    kind: str = "image"  # "image" | "text"
    summary: str = ""

    def __call__(self, x: Any, strength: float, generator: Any = None, **extra: Any) -> Any:
        s = check_strength(strength)
        missing = [n for n in self.needs if extra.get(n) is None]
        if missing:
            raise ValueError(f"attack {self.name!r} needs {', '.join(missing)} (pass it as a keyword argument)")
        return self.fn(x, s, generator, **extra)

    def param_value(self, strength: float) -> Any:
        """The natural parameter at ``strength``."""
        return self.mapping(check_strength(strength))

    def describe(self) -> str:
        """One line for ``wmark attack list``."""
        flags = [f for f, on in (("geometric", self.geometric), ("identity at 0", self.identity_at_zero)) if on]
        needs = f"; needs {', '.join(self.needs)}" if self.needs else ""
        return f"{self.name:<14} {self.param} : {self.mapping_doc}  [{', '.join(flags) or '-'}{needs}]"
