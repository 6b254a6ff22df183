# Lets the template's tests run from a source checkout before it is installed.
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("dife_plugin_template") is None:
    sys.path.insert(0, str(Path(__file__).parent))
