#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corral.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load the settings now, to report them well
    except ImproperlyConfigured as e:
        # A bad environment variable: one line naming it, no traceback.
        sys.exit(f"corral: configuration error: {e}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
