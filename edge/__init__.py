"""AnQi edge appliance: e-bike safe-riding supervision at the roadside.

The pipeline, one package per stage:
source -> buffer -> detect -> track -> zone -> rules -> evidence -> actuators + relay.
``edge.daemon`` only wires the stages together.
"""

__version__ = "0.1.0"
