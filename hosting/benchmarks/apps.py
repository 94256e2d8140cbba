from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    """Only so Django finds the benchmark commands: no models, no migrations."""

    name = "hosting.benchmarks"
    label = "benchmarks"
