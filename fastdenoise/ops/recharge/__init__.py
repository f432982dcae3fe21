"""Recharged Distillation (APR-RD): recharged multi-target L1 loss."""
