"""Library messages name request fields, never command-line flags (only cli/ knows flags, and
maps them: ``in_flags``). A scan of every string the library can say, and the mapping."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from rhythmflow.cli.flags import in_flags

SRC = Path(__file__).resolve().parents[1] / "src" / "rhythmflow"
#: front ends: the command line, and the parts of serve that are its command line
FRONT = ("cli/", "serve/commands.py", "serve/settings.py", "serve/static/")
FLAG = re.compile(r"(?<![\w`/-])--[a-z][a-z0-9-]+")
#: another program's own flags, quoted as a command to run (the hf CLI's download)
FOREIGN = ("--repo-type",)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_library_message_names_a_flag():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(FRONT):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs:
                flags = [f for f in FLAG.findall(node.value) if f not in FOREIGN]
                if flags:
                    found.append(f"{rel}:{node.lineno}: {flags} in {node.value[:70]!r}")
    assert not found, "\n".join(found)


def test_the_cli_says_flags_for_fields_and_settings():
    assert in_flags("steps: at most 1000", "steps") == "--steps: at most 1000"
    assert in_flags("Try batch=1, dtype=bfloat16, a shorter duration.") == \
        "Try --batch 1, --dtype bfloat16, a shorter duration."
    assert in_flags("run `rhythmflow fetch with_chinese=1` once") == \
        "run `rhythmflow fetch --with-chinese` once"
    assert in_flags("(offline=1 or HF_HUB_OFFLINE)") == "(--offline or HF_HUB_OFFLINE)"
    assert in_flags("style_embedding_file: no such file", "style_embedding_file") == \
        "--style-embedding: no such file"
    assert in_flags("nothing to map here; a=b") == "nothing to map here; a=b"
