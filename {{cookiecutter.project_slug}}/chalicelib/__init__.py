"""The Lambda function's own modules: Chalice packages this folder with app.py."""
