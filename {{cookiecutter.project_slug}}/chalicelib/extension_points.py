"""The team's choices about the handler, each in one named function: edit them here.

This file is yours, not the template's: `cruft update` leaves it alone. The handler's runtime
(chalicelib/template_runtime/) calls these functions once per record, as plain function calls,
so keep them quick and free of I/O. As shipped they reproduce the template's own behaviour.

If one of them raises for a record, or returns something the runtime cannot use, that record
alone goes to the dead-letter queue with error_code ExtensionPointError and the exception's
message as error_reason; the rest of the batch goes on.

- model_input: how a message body becomes the model's input. The runtime has already read the
  body as a JSON object and found it is not the producer envelope ({"event_id", "event_time",
  "features"}: the contract between teams, whose `features` are the model input as they are).
  The result is checked against the model input schema (MODEL_INPUT_SCHEMA), then sent to the
  endpoint; it must be a dict of JSON values.
- prediction_key: the value that keys a record's prediction where the destination is keyed: the
  Kinesis partition key, the DynamoDB table key, the FIFO message group. Called only when
  PARTITION_KEY_FIELD is set (.chalice/config.json sets it for the kinesis and dynamodb
  destinations). None, or "", dead-letters the record with error_code MissingPartitionKey.
- extra_envelope_fields: fields the team adds to each published prediction envelope. They travel
  under the envelope's "extra" object (schemas/prediction-envelope.schema.json), which is left
  out when this returns {}, so the envelope's own fields can never be overwritten; a name that
  repeats one of them is refused all the same, so consumers cannot mistake one for the other.
  Consumers that validate with a copy of the schema older than "extra" refuse envelopes that
  carry it: give them the current schema before returning anything here.
"""

from __future__ import annotations

from typing import Any


def model_input(document: dict[str, Any]) -> dict[str, Any]:
    """The model input for a body that is not the producer envelope: as shipped, the body itself."""
    return document


def prediction_key(model_input: dict[str, Any], key_field: str) -> str | None:
    """The key of this input's prediction: as shipped, its `key_field` value if a string or a whole number.

    True and False are not keys (bool is an int in Python), nor are decimals: 1.0 and 1 would key
    one user's predictions two ways.
    """
    value = model_input.get(key_field)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def extra_envelope_fields(model_input: dict[str, Any], prediction: object) -> dict[str, Any]:
    """Fields to publish with the prediction, under the envelope's "extra": as shipped, none."""
    return {}
