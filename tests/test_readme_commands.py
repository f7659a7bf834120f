"""Every manage.py command the README prints works when pasted into a shell in the project directory.

What is checked, for each command line in the README (indented code blocks and inline code spans):

- every line that runs manage.py is one of the two forms that work from a fresh shell:
  `[VAR=value ...] make manage ARGS="command ..."` or an environment prefix holding `DEBUG=1` or
  `SECRET_KEY=` before `.venv/bin/python manage.py command ...` (a bare `python manage.py` is neither
  the project's interpreter nor given a key); a span that starts with `manage.py` names a command in
  prose and is not a command line;
- the command exists and its arguments, as printed, parse (optional `[...]` parts left out; lines
  with a `...` or upper-case placeholder are parsed only up to the command name);
- run in a subprocess, with no DEBUG or SECRET_KEY inherited from this process: each
  `DEBUG=1 .venv/bin/python manage.py` line without a DATABASE_URL of its own, with `--help`
  (cheap, and it loads the settings as printed), and the `make manage` lines whose command is in
  RUN_AS_PRINTED, as printed, against a temporary migrated SQLite database. Each must exit 0.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Cheap on an empty database, and run as printed; the rest (seeding, benchmarks, training) is
# checked for its form, command name and arguments only.
RUN_AS_PRINTED = {"create_api_key", "load_catalog", "ensure_schedules", "refresh_segments"}

ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")
OPTIONAL = re.compile(r"\s*\[[^\]]*\]")
PLACEHOLDER = re.compile(r"\.\.\.|…|\b[A-Z]{2,}\b")


def snippets(text: str) -> list[str]:
    """Indented code-block lines (without their trailing comment) and inline code spans."""
    found, pending = [], ""
    for line in text.splitlines():
        if line.startswith("    ") or pending:
            line = pending + line.strip()
            pending = line[:-1] if line.endswith("\\") else ""
            if not pending:
                found.append(re.sub(r"\s+#.*$", "", line))
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [s for s in found if s]


def readme_commands() -> list[str]:
    return [
        s
        for s in snippets(README.read_text())
        if ("manage.py" in s or "make manage" in s)
        and not s.startswith("manage.py")
        and not re.fullmatch(r'make manage ARGS="(…|\.\.\.)"', s)
    ]


def split(command: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(command)
    env = {}
    while words and ENV_WORD.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def manage_args(command: str) -> tuple[dict[str, str], list[str], str]:
    """The environment prefix, the manage.py arguments and the form ("make" or "python")."""
    env, words = split(command)
    if words[:2] == ["make", "manage"]:
        assert len(words) == 3, f'{command!r}: make manage takes one ARGS="..."'
        assert words[2].startswith("ARGS="), f'{command!r}: make manage takes its arguments as ARGS="..."'
        return env, shlex.split(words[2].removeprefix("ARGS=")), "make"
    assert words[:2] == [".venv/bin/python", "manage.py"], (
        f'{command!r}: run manage.py as `make manage ARGS="..."` or `DEBUG=1 .venv/bin/python manage.py ...`'
    )
    assert env.get("DEBUG") == "1" or "SECRET_KEY" in env, (
        f"{command!r} stops with 'SECRET_KEY must be set' in a fresh shell: add DEBUG=1 or use make manage"
    )
    return env, words[2:], "python"


def without_optional(command: str) -> str:
    return OPTIONAL.sub("", command)


def test_readme_has_the_commands_this_test_runs():
    commands = readme_commands()
    ran = {manage_args(c)[1][0] for c in commands}

    assert len(commands) >= 15
    assert ran >= RUN_AS_PRINTED
    assert any(c.startswith("DEBUG=1 .venv/bin/python manage.py") for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_has_a_form_that_works_and_arguments_that_parse(command):
    _env, args, _form = manage_args(without_optional(command))
    name, rest = args[0], args[1:]
    commands = get_commands()

    assert name in commands, f"{command!r}: no manage.py command {name!r}"
    if not PLACEHOLDER.search(" ".join(rest)):
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(rest)


def clean_env(**extra: str) -> dict[str, str]:
    dropped = ("DEBUG", "SECRET_KEY", "DATABASE_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(extra)
    return env


def run_shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_debug_python_lines_run_as_printed_with_help():
    lines = [c for c in readme_commands() if c.startswith("DEBUG=1 .venv/bin/python manage.py")]
    lines = [c for c in lines if "DATABASE_URL" not in c]
    assert lines

    for command in lines:
        env, args, _form = manage_args(command)
        line = shlex.join([f"{k}={v}" for k, v in env.items()] + [".venv/bin/python", "manage.py", args[0], "--help"])
        done = run_shell(line, clean_env())
        assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"


@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="runs on a fresh SQLite database of its own whatever the suite's: the SQLite run covers it",
)
def test_make_manage_lines_run_as_printed_against_a_fresh_database(tmp_path):
    database = f"sqlite:///{tmp_path / 'readme.sqlite3'}"
    migrated = run_shell("make migrate", clean_env(DATABASE_URL=database))
    assert migrated.returncode == 0, migrated.stderr[-2000:]

    ran = set()
    for command in readme_commands():
        env, args, form = manage_args(command)
        printed = without_optional(command)
        if form != "make" or args[0] not in RUN_AS_PRINTED or env or PLACEHOLDER.search(printed.partition("ARGS=")[2]):
            continue
        done = run_shell(printed, clean_env(DATABASE_URL=database))
        assert done.returncode == 0, f"{printed}\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"
        ran.add(args[0])

    assert ran == RUN_AS_PRINTED
