from django.apps import AppConfig


class CorralConfig(AppConfig):
    """The project on top of the four apps: settings, root URLs, the API root,
    the overview pages and the commands that start or seed everything."""

    name = "corral"
