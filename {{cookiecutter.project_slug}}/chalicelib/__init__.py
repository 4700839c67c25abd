"""The Lambda function's code: extension_points.py is the team's, template_runtime/ the template's."""
