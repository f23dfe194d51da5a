"""Docs against the code and the records: the README's command synopsis, the constants docs quote, the trial
record's attributes in docs/space.md, and the measurement records every figure in the docs comes from."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import typer.main

from search.cli.app import app
from search.store import record

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# [--name VALUE], [--name], [--flag/--no-flag]; VALUE is a default when it is neither a PLACEHOLDER nor a|choice.
SHOWN = re.compile(r"\[(--[\w-]+)(?:/(--[\w-]+))?(?: ([^\]]+))?\]")


def _synopsis() -> dict[str, str]:
    """Each command of the README's synopsis block with its line(s), comments cut."""
    readme = README.read_text(encoding="utf-8")
    block = "fsearch run" + readme.split("```\nfsearch run", 1)[1].split("```", 1)[0]
    entries = {}
    for entry in re.split(r"\n(?=fsearch )", block.strip()):
        text = " ".join(line.split("  #")[0] for line in entry.splitlines())
        entries[text.split()[1]] = text
    return entries


def _same(shown: str, default: object) -> bool:
    if isinstance(default, bool | int | float):
        return float(shown) == float(default)
    return shown == default


def test_the_readmes_synopsis_shows_real_options_with_their_real_defaults() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    synopsis = _synopsis()
    assert set(synopsis) == set(commands), "the synopsis lists every command, and only those"
    wrong = []
    for name, text in synopsis.items():
        params = {opt: p for p in commands[name].params for opt in [*p.opts, *p.secondary_opts]}
        for opt, negative, value in SHOWN.findall(text):
            for shown in filter(None, (opt, negative)):
                if shown not in params:
                    wrong.append(f"fsearch {name}: no option {shown}")
            literal = value and value == value.lower() and "|" not in value
            if opt in params and literal and not _same(value, params[opt].default):
                wrong.append(f"fsearch {name} {opt}: README shows {value}, the default is {params[opt].default!r}")
    assert not wrong, wrong


def test_docs_space_names_every_attribute_the_trial_record_writes() -> None:
    names = {value.rstrip(":") for key, value in vars(record).items() if key.isupper() and isinstance(value, str)}
    assert {"seed", "stage", "drawn_by", "plan", "export"} <= names  # the module's constants were found
    documented = (REPO / "docs" / "space.md").read_text(encoding="utf-8")
    missing = sorted(name for name in names if f"`{name}" not in documented)
    assert not missing, f"attributes search/store/record.py writes that docs/space.md does not describe: {missing}"


def _constants() -> dict[str, str]:
    """Each module-level UPPER_CASE name of the packages, with the module that assigns it."""
    homes = {}
    for path in sorted([*(REPO / "search").rglob("*.py"), *(REPO / "space").rglob("*.py")]):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    homes[target.id] = module
    return homes


def test_the_constants_docs_quote_have_the_values_the_code_gives_them() -> None:
    homes = _constants()
    quoted = [
        (doc.name, name, value)
        for doc in [README, *sorted((REPO / "docs").glob("*.md"))]
        for name, value in re.findall(r"`([A-Z][A-Z_0-9]+)` = ([0-9][0-9.]*)", doc.read_text(encoding="utf-8"))
    ]
    assert len(quoted) >= 5  # docs/defaults.md quotes the time plan's constants
    wrong = [f"{doc}: {name} is no constant of search/ or space/" for doc, name, _ in quoted if name not in homes]
    for doc, name, value in quoted:
        actual = getattr(importlib.import_module(homes[name]), name) if name in homes else None
        if actual is not None and float(value.rstrip(".")) != float(actual):
            wrong.append(f"{doc}: {name} = {value}, the code says {actual}")
    assert not wrong, wrong


PROVENANCE = {"command", "commit", "machine", "seed", "concurrent"}  # what every figure's record must say


def test_every_measurement_record_says_where_it_came_from_and_is_linked_from_the_docs() -> None:
    folder = REPO / "docs" / "measurements"
    records = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("*.json")}
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    linked = {name for doc in docs for name in re.findall(r"measurements/([\w.-]+\.json)", doc.read_text("utf-8"))}
    assert len(records) > 10  # the folder was found
    assert sorted(linked - set(records)) == [], "docs link records that do not exist"
    assert sorted(set(records) - linked) == [], "records no doc links to"
    incomplete = [f"{name}: no 'what'" for name, data in records.items() if "what" not in data]
    for name, data in records.items():
        # A transcription (of closing notes, when the raw output was not kept) carries provenance per entry.
        entries = (data.get("entries") or data.get("runs")) if "transcribed" in data else [data]
        incomplete += [f"{name}: no {sorted(PROVENANCE - set(e))}" for e in entries if PROVENANCE - set(e)]
    assert not incomplete, incomplete
