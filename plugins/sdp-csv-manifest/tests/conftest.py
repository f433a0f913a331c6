import sys
from pathlib import Path

# run the plugin's tests from a checkout without installing it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
