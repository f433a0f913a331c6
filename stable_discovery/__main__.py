import sys

from stable_discovery.cli.main import main

sys.exit(main())
