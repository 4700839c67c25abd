"""The Lambda function's code, packaged with app.py: extension_points.py is the team's, template_runtime/ the template's."""
