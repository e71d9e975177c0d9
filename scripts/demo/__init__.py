"""`make demo`: the whole platform on one machine without a cluster.

Trains two model versions, serves them with the real frontend under gunicorn,
rolls the second one out with `mnist-operator local` while real MNIST digits
flow through the API, and shows the rollout live in the terminal.
"""
