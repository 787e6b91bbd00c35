"""One checker for every keyword a user passes: the VAD knobs (_constants.KNOBS), the model
options (asr.OPTIONS, remote ones included) and an entry point's own keywords (max_seconds,
...). A name nobody takes is reported with its close match across ALL of them, and a name
given to an entry point that does not take its kind says where it goes."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping

from ._constants import KNOBS

KNOB = "VAD knob"
OPTION = "model option"


def _tables() -> dict[str, Iterable[str]]:
    from .asr import OPTIONS  # imported on first use: the VAD's checks need no ASR package

    return {KNOB: KNOBS, OPTION: OPTIONS}


def own_keywords(function: Callable) -> list[str]:
    """The named parameters of ``function`` (not self, *args or **kwargs)."""
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind not in skip and p.name != "self"]


def check_names(
    given: Iterable[str],
    where: str,
    takes: Iterable[str],
    own: Callable | Iterable[str] = (),
    hint: str = "",
) -> None:
    """TypeError for the first name in ``given`` that ``where`` does not take.

    ``takes``: the kinds it takes (KNOB, OPTION); ``own``: its own keywords, or the function
    whose signature lists them; ``hint``: what to do with a known name of another kind."""
    given = list(given)
    own_names = own_keywords(own) if callable(own) else list(own)
    takes = tuple(takes)
    if KNOB in takes and all(name in KNOBS for name in given) and OPTION not in takes:
        return  # the common case of a VAD's own check, without importing the ASR package
    tables = _tables()
    accepted = {n for kind in takes for n in tables[kind]}
    for name in given:
        if name in accepted:
            continue
        kind = next((k for k, names in tables.items() if name in names), None)
        if kind is not None:
            raise TypeError(f"{where} does not take {kind}s such as {name!r}. {hint}".strip())
        own = {n: f"keyword of {where}" for n in own_names}
        everywhere = {n: k for k, names in tables.items() for n in names} | own
        close = difflib.get_close_matches(str(name), everywhere, 1, cutoff=0.6)
        guess = f": did you mean {close[0]!r} (a {everywhere[close[0]]})?" if close else "."
        listing = "; ".join(
            f"{label}: {', '.join(names)}"
            for label, names in [
                ("its own keywords", own_names),
                *[(kind + "s", list(tables[kind])) for kind in takes],
            ]
            if names
        )
        raise TypeError(f"{where} got an unknown keyword {name!r}{guess} It takes {listing}.")


def split(keywords: Mapping, where: str, own: Callable | Iterable[str] = ()) -> tuple[dict, dict]:
    """(VAD knobs, model options) from one keyword dict, every name and value checked."""
    from .asr import check_options
    from .vad import check_params

    check_names(keywords, where, (KNOB, OPTION), own)
    knobs = {k: v for k, v in keywords.items() if k in KNOBS}
    options = {k: v for k, v in keywords.items() if k not in KNOBS}
    return check_params(**knobs), check_options(options)


__all__ = ["KNOB", "OPTION", "check_names", "own_keywords", "split"]
