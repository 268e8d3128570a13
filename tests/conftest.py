import sys
from pathlib import Path

# Test helpers (vectors.py, builders) are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
