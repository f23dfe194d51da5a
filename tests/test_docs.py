"""Docs against the code and the records: the README's layout map and command synopsis, the constants docs
quote, the trial record's attributes in docs/space.md, and the measurement records the docs' figures come from."""

from __future__ import annotations

import ast
import importlib
import json
import re

import typer.main

from search.cli.app import app
from search.store import record
from tests.support import REPO, package_modules

README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
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


def _readme_map() -> dict[str, str]:
    """The README's layout block: each folder with the text that describes it (continuation lines included)."""
    readme = README.read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    folders: dict[str, str] = {}
    folder = ""
    for line in block.splitlines():
        if line and not line.startswith(" "):
            folder, _, line = line.partition(" ")
            folder = folder if folder.endswith("/") else ""  # search/__init__.py has a line of its own
        if folder:
            folders[folder] = folders.get(folder, "") + " " + line
    return folders


def test_the_readmes_layout_names_every_module_and_only_modules_that_exist() -> None:
    folders = _readme_map()
    paths = package_modules("search", "space", "benchmarks").values()
    modules = {(f"{p.parent.relative_to(REPO).as_posix()}/", p.name) for p in paths if p.name != "__init__.py"}
    unnamed = sorted(f"{d}{n}" for d, n in modules if not re.search(rf"\b{re.escape(n)}", folders.get(d, "")))
    named = {(d, n) for d, text in folders.items() for n in re.findall(r"\b\w+\.py\b", text)}
    missing = sorted(f"{d}{n}" for d, n in named - modules)
    assert len(modules) > 40  # the walk found the package
    assert not unnamed, f"modules the README's layout does not name: {unnamed}"
    assert not missing, f"the README's layout names files that do not exist: {missing}"


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
    for module, path in package_modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            homes |= {t.id: module for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return homes


def test_the_constants_docs_quote_have_the_values_the_code_gives_them() -> None:
    homes = _constants()
    quoted = [
        (doc.name, name, value)
        for doc in DOCS
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
    linked = {name for doc in DOCS for name in re.findall(r"measurements/([\w.-]+\.json)", doc.read_text("utf-8"))}
    assert len(records) > 10  # the folder was found
    assert sorted(linked - set(records)) == [], "docs link records that do not exist"
    assert sorted(set(records) - linked) == [], "records no doc links to"
    incomplete = [f"{name}: no 'what'" for name, data in records.items() if "what" not in data]
    for name, data in records.items():
        # A transcription (of closing notes, when the raw output was not kept) carries provenance per entry.
        entries = (data.get("entries") or data.get("runs")) if "transcribed" in data else [data]
        incomplete += [f"{name}: no {sorted(PROVENANCE - set(e))}" for e in entries if PROVENANCE - set(e)]
    assert not incomplete, incomplete
