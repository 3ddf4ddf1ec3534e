"""The field's protocols around the simulated plant (optional extra ``vpp[protocols]``).

Modules here import their protocol libraries (openleadr, ocpp, websockets)
lazily, so ``import vpp`` and ``vpp run`` work without the extra.
"""
