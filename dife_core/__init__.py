"""DIFE: Deployment-Interface Footprint Evaluation of CLIP backdoors.

``from dife_core import hookimpl`` is all a plugin needs to take part.
Importing this package never imports torch.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("dife")

__all__ = ["hookimpl", "__version__"]
