"""The house a newcomer reads (issue 31), checked statically in about a second:

- every ``opentranscribe ...`` command line in the README and docs/ names a real command and
  real options, and every file path they name exists;
- no import circle between modules (top-level imports), and no Dagster-free package imports
  Dagster or the Dagster layer (assets, resources, sensors, CLI, runner), not even lazily;
- no module over about 450 lines outside schemas.py.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex

from opentranscribe_pipeline.cli import build_parser

from .conftest import ROOT

PACKAGE = ROOT / "opentranscribe_pipeline"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DAGSTER_FREE = ("storage", "speech", "speakers", "drops", "deliver", "search", "query", "accounts", "app")
DAGSTER_LAYER = ("dagster", *(f"opentranscribe_pipeline.{m}" for m in ("assets", "resources", "sensors", "cli")))
DAGSTER_LAYER += (
    "opentranscribe_pipeline.definitions",
    "opentranscribe_pipeline.executors",
    "opentranscribe_pipeline.runner",
)
MAX_LINES = 480  # "about 450"
RUNTIME_PATHS = ("_speakers/",)  # paths inside a warehouse, not in the repository


def doc_code(text: str) -> list[str]:
    """The lines of fenced code blocks and the inline code spans of a Markdown text."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [line for block in blocks for line in block.splitlines()] + inline


def _subcommands(parser: argparse.ArgumentParser) -> dict | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return None


def test_every_command_line_in_the_docs_names_real_commands_and_options():
    parser, checked, wrong = build_parser(), 0, []
    for doc in DOCS:
        for line in doc_code(doc.read_text()):
            found = re.match(r"(?:\$ )?(?:\S*/)?opentranscribe (\S.*)", line.strip())
            if not found:
                continue
            command = re.split(r"\s(?:#|\||&&|>|2>)", found.group(1))[0].rstrip("\\ ")
            try:
                tokens = shlex.split(command)
            except ValueError:
                tokens = command.split()
            current, chain = parser, []
            checked += 1
            for token in tokens:
                choices = _subcommands(current)
                if choices is not None and re.fullmatch(r"[a-z][a-z-]*", token):
                    if token not in choices:
                        wrong.append(f"{doc.name}: {line.strip()!r}: no command {token!r}")
                        break
                    current = choices[token]
                    chain.append(token)
                elif token.startswith("--"):
                    known = {s for a in current._actions for s in a.option_strings}
                    if token.split("=")[0] not in known:
                        wrong.append(f"{doc.name}: {line.strip()!r}: `{' '.join(chain)}` has no {token}")
    assert checked > 50 and not wrong, wrong


def test_every_file_path_the_docs_name_exists():
    wrong = []
    for doc in DOCS:
        for code in doc_code(doc.read_text()):
            for path in re.findall(r"(?:^|[\s(])((?:[\w.-]+/)+[\w.-]+\.(?:py|ya?ml|md|json|toml))\b", " " + code):
                if path.startswith(RUNTIME_PATHS):
                    continue
                if not any(
                    (base / path).exists() for base in (ROOT, PACKAGE, ROOT / "docs", ROOT / "tests", ROOT / "deploy")
                ):
                    wrong.append(f"{doc.name}: {path}")
    assert not wrong, wrong


def _modules() -> dict[str, tuple]:
    """module name -> (path, top-level imports, all imports), relative imports resolved."""
    out = {}
    paths = {
        p: ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py")
    }
    names = set(paths.values())
    for path, name in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        top, every = set(), set()

        def visit(node, nested: bool, package=package, top=top, every=every) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                targets = []
                if isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        parts = package.split(".")
                        base = ".".join(
                            parts[: len(parts) - child.level + 1] + ([child.module] if child.module else [])
                        )
                    targets = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in names] or [base]
                elif isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                every.update(targets)
                if not inner:
                    top.update(targets)
                visit(child, inner)

        visit(ast.parse(path.read_text()), False)
        # a module's own packages are imported before it anyway: not an edge
        top = {t for t in top if t in names and t != name and not name.startswith(t + ".")}
        out[name] = (path, top, every)
    return out


def test_no_import_circle_and_no_dagster_in_the_dagster_free_packages():
    modules = _modules()
    graph = {name: top for name, (_, top, _) in modules.items()}
    circles, state = [], {}

    def walk(node: str, trail: list[str]) -> None:  # depth-first; a back edge is a circle
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt) :] + [node, nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                walk(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert not circles, circles

    reaching_up = {
        name: sorted(
            t
            for t in every
            if t == "dagster" or t.startswith(tuple(f"{x}." for x in DAGSTER_LAYER)) or t in DAGSTER_LAYER
        )
        for name, (_, _, every) in modules.items()
        if name.split(".")[1:2] and name.split(".")[1] in DAGSTER_FREE
    }
    assert {k: v for k, v in reaching_up.items() if v} == {}
    assert len(reaching_up) > 60  # the packages were found


def test_no_module_is_over_about_450_lines_outside_the_schemas():
    long = {
        str(path.relative_to(ROOT)): n
        for path, _, _ in _modules().values()
        if (n := path.read_text().count("\n")) > MAX_LINES and path.name != "schemas.py"
    }
    assert long == {}
