"""The team's own code, never deployed to Lambda: here, the example recommender's clickstream and training."""
