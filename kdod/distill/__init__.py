"""Distillation: the Distiller (frozen teacher, trained student), teacher loading and the
registered distillation losses (kdod/distill/losses/)."""
