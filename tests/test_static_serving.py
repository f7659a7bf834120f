"""Static files are served by the web processes themselves (WhiteNoise) once collected, as under
gunicorn in `make serve`, where no runserver serves them."""

from django.core.management import call_command
from django.test import Client


def test_collected_static_files_are_served_with_debug_off(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)

    icon = Client().get("/static/crmseg/favicon.svg")
    admin_css = Client().get("/static/admin/css/base.css")

    assert settings.DEBUG is False
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"".join(icon.streaming_content).lstrip().startswith(b"<svg")
    assert admin_css.status_code == 200
    assert Client().get("/static/crmseg/no-such-file.css").status_code == 404
