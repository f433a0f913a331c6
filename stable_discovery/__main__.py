import sys

from stable_discovery.cli.clock import mark_process_start
from stable_discovery.cli.main import main

mark_process_start()
sys.exit(main())
