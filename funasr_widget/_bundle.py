"""Where the built front end lives, and what to do when it is not there."""

from __future__ import annotations

import pathlib

STATIC = pathlib.Path(__file__).parent / "static"


def bundle(name: str) -> pathlib.Path:
    """The path of `static/<name>`, a file of the built front end (js/ bundled by esbuild).

    Raises FileNotFoundError saying how to build it when it is missing: a source checkout
    that was never built, or an install made without the build hook.
    """
    path = STATIC / name
    if not path.is_file():
        source = STATIC.parent.parent
        where = (
            f"in the source tree ({source})"
            if (source / "package.json").is_file() and (source / "js").is_dir()
            else "in a clone of funasr-widget's source tree"
        )
        raise FileNotFoundError(
            f"funasr_widget's front end was not built: {path} is missing.\n"
            f"Build it {where} with `npm ci && npm run build` (needs node and npm; `make` does it too), "
            "or reinstall from a wheel or with `pip install .` from the source tree, "
            "which runs that build."
        )
    return path
