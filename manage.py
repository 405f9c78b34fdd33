#!/usr/bin/env python
"""Django's command-line utility; a bad setting stops it with one line naming the variable."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")
    from easyrag.config import load_or_exit

    load_or_exit()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
