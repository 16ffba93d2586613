"""Flower App: a small CNN trained with PyTorch on CIFAR-10 or an offline stand-in."""
