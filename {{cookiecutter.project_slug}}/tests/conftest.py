# tests/test_model.py runs in the model's own virtualenv (model/code/requirements.txt plus pytest),
# as the model runs in its container: `make test` runs it there with
# `python -m template_tools.model_environment --pytest tests/test_model.py`. The development
# venv's pytest skips it, so a package the model needs but its requirements.txt lacks fails
# the test instead of passing on a package the handler happens to have.
collect_ignore = ["test_model.py"]
