"""Flower App: federated logistic regression on scikit-learn's bundled digits data set."""
