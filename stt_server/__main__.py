"""`python -m stt_server [flags]`: the same as the `stt-server` command."""

import sys

from stt_server.cli import main

sys.exit(main())
