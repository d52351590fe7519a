"""What every recipe shares, once: the trainer base and the plain labelled step
(trainer.py), the baseline a recipe is measured against (baseline.py), the resumable fit
loop and its stages (fit.py), checkpoints, weight averages, optimizers, the start and end of
a run (lifecycle.py), teacher and student scored side by side (evaluation.py), and the
Recipe every recipe declares (recipe.py). The core never imports a recipe."""
