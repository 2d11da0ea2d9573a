"""``python -m orchestrator.providers.local [NAME] [--pull REF]``: build the node image."""
import sys

from orchestrator.providers.local.image import main

sys.exit(main())
