"""Network architectures used by the trainers."""
from fastdenoise.models.atbsn import ATBSN
from fastdenoise.models.atbsn import ATBSNRotated
from fastdenoise.models.atbsn import BlindUNet
from fastdenoise.models.atbsn import Student

__all__ = ["ATBSN", "ATBSNRotated", "BlindUNet", "Student"]
