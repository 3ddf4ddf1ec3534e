"""Field protocols (OpenADR 2.0b, OCPP 2.0.1) on the wire; optional extra ``vpp[protocols]``, imported lazily."""
