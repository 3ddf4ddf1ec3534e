"""The field's protocols around the simulated plant (optional extra ``vpp[protocols]``): OpenADR 2.0b and OCPP 2.0.1.

Only the commands that speak them (``vpp vtn``, ``vpp ven``, ``vpp loadgen``,
``vpp ocpp``) import these modules and their libraries (openleadr, ocpp,
websockets), so ``import vpp`` and ``vpp run`` work without the extra.
"""
