"""An emulator of the OpenNebula APIs used by the opennebula.flower collection.

oned XML-RPC (pyone, community.general), OneFlow REST and OneGate REST, modelled on
OpenNebula 7.0.2 (default) or 6.10. See ``README.md`` in this directory.
"""

from .core import Hooks, Timings
from .server import Emulator
from .state import Vm

__all__ = ["Emulator", "Hooks", "Timings", "Vm"]
