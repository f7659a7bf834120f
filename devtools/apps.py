from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Benchmarks and their data generators: development tools that import only public functions
    of the product apps. Product code never imports from here."""

    name = "devtools"
    verbose_name = "Development tools"
