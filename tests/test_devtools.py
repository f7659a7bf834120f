"""devtools holds the benchmarks apart from the product: the product never imports it, and it
uses the product apps' public names only."""

import ast
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, get_commands

from segments.models import Segment

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_APPS = ["activation", "api", "contacts", "crmseg_site", "predictions", "segments"]
# The benchmarks that moved here from the product apps (newer ones were written here).
MOVED = [
    "bench_analytics", "bench_api", "bench_export", "bench_metrics",
    "bench_pages", "bench_personalization", "bench_predictions", "bench_segments",
]  # fmt: skip


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from module import name` and `import module` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_every_benchmark_command_lives_in_devtools():
    benchmarks = {name: app for name, app in get_commands().items() if name.startswith("bench")}

    assert set(MOVED) <= set(benchmarks)
    assert set(benchmarks.values()) == {"devtools"}


def test_no_product_module_imports_devtools():
    importers = [
        f"{path.relative_to(ROOT)}: {module}"
        for app in PRODUCT_APPS
        for path in (ROOT / app).rglob("*.py")
        for module, _ in _imports(path)
        if module.split(".")[0] == "devtools"
    ]

    assert importers == []


def test_devtools_uses_public_names_of_the_product_only():
    private = [
        f"{path.relative_to(ROOT)}: {module} {name}"
        for path in (ROOT / "devtools").rglob("*.py")
        for module, name in _imports(path)
        if module.split(".")[0] in PRODUCT_APPS
        and (name.startswith("_") or any(part.startswith("_") for part in module.split(".")))
    ]

    assert private == []


def test_bench_governance_times_the_report_and_leaves_the_database_as_it_was(db):
    out = StringIO()
    call_command("bench_governance", "--segments", "30", "--repeat", "1", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("30 segments (30 made for the benchmark)")
    assert all("queries)" in line for line in lines[1:])
    assert [line.split(" median")[0].strip() for line in lines[1:]] == [
        "governance report (all rows, in Python)",
        "governance page (admin, HTML)",
        "governance page, overdue only, by next due",
        "governance CSV",
        "governance API (JSON)",
        "review reminders: today's notices",
    ]
    assert not Segment.objects.exists()


def test_bench_load_refuses_a_mix_it_cannot_send():
    with pytest.raises(CommandError, match=r"--mix 'api=3,email=1': use kind=weight pairs of api, page"):
        call_command("bench_load", "--url", "http://127.0.0.1:1", "--mix", "api=3,email=1")
