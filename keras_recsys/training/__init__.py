"""Training machinery shared by every model: how task losses combine, the optimizer fix."""
