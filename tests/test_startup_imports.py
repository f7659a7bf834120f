"""Start-up stays light: the heavy scientific libraries are imported on first use, not by `django.setup()`."""

import json
import subprocess
import sys

from django.conf import settings

from tests.processes import child_env

# The project's decision (predictions/__init__.py): these are imported inside the functions that use
# them. scipy.sparse (predictions/attribution.py) was the last one loaded at start-up: ~170 ms.
HEAVY = ("sklearn", "scipy", "skops", "statsmodels")


def test_django_setup_imports_none_of_the_heavy_libraries():
    code = "import django, json, sys; django.setup(); print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=child_env(), capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert "django.contrib.admin" in loaded  # the apps and their admins were loaded
    assert [name for name in loaded if name.split(".")[0] in HEAVY] == []
