"""Request fields in the command line's words: only here do fields become flags.

Library messages name request fields — a leading ``field:`` and ``name=value`` settings to
change; :func:`in_flags` writes them as this command line's flags before they are shown.
"""

from __future__ import annotations

import dataclasses
import re

from rhythmflow.request import GenerationRequest

#: request field → the generate flag that sets it (where it is not ``--field-name``)
FLAGS = {"style_embedding_file": "--style-embedding", "estimate": "--skip-estimate",
         "chunked": "--no-chunked", "negative_style_embedding": "--negative-style"}


def flag_of(field: str) -> str:
    """The command-line flag of a request field (``steps`` → ``--steps``)."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


#: the names a library message may set as ``name=value``: request fields and the settings of a
#: run that are not part of the request (output, assets_dir, offline, with_chinese)
_SETTABLE = "|".join(sorted({f.name for f in dataclasses.fields(GenerationRequest)}
                            | {"output", "assets_dir", "offline", "with_chinese", "with_asr"},
                            key=len, reverse=True))
_SETTING = re.compile(rf"(?<![\w-])({_SETTABLE})=(\S+?)(?=[,;:)`\s]|\.(?:\s|$)|$)")


def in_flags(message: str, field: str | None = None) -> str:
    """A library message in the command line's words: a leading ``field`` and every
    ``name=value`` setting become flags (``batch=1`` → ``--batch 1``; a flag without a value,
    such as ``--offline``, for ``=1``)."""
    if field and message.startswith((field + ":", field + " ")):
        message = flag_of(field) + message[len(field):]

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        return flag_of(name) if value == "1" and name in ("offline", "with_chinese", "with_asr") \
            else f"{flag_of(name)} {value}"

    return _SETTING.sub(flag, message)
