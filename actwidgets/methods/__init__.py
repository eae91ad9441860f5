"""Pure computation: a model and inputs in, tensors or dataclasses out. No widgets here."""
