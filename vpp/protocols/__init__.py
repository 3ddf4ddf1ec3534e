"""The field's protocols on the wire (optional extra ``vpp[protocols]``): OpenADR 2.0b and OCPP 2.0.1."""
