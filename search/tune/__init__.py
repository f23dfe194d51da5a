"""The search: the objective, samplers, pruners and the loop that runs trials here or in workers."""
