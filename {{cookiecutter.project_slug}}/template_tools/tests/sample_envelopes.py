# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A well-formed prediction envelope, as consumers receive it, for tests that need one to hand."""


def sample_envelope(message_id: str = "db5b5fab-8f4d-4e27-9da1-494c73cf256d", number: int = 1) -> dict:
    """An envelope that meets schemas/prediction-envelope.schema.json, with this message id.

    Its prediction is one the echo model could make for its input number `number`: whatever the
    team's model answers, the envelope's contract is the same.
    """
    return {
        "schema_version": "1.0",
        "prediction": {"id": f"rec-{number:04d}", "value_scaled": number * 2 + 1.0},
        "message_id": message_id,
        "event_id": message_id,
        "endpoint_name": "{{ cookiecutter.endpoint_name }}",
        "endpoint_variant": "AllTraffic",
        "model_version": "1",
        "event_time": "2026-11-25T10:00:00.000Z",
        "prediction_time": "2026-11-25T10:00:00.120Z",
        "latency_ms": 120.0,
        "endpoint_latency_ms": 35.2,
    }
