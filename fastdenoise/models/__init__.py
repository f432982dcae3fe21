"""Network architectures used by the trainers."""
from fastdenoise.models.atbsn import ATBSN
from fastdenoise.models.atbsn import ATBSNRotated
from fastdenoise.models.atbsn import BlindUNet
from fastdenoise.models.atbsn import Student
from fastdenoise.models.blind2grad_net import Blind2GradNet
from fastdenoise.models.unet_n2n import UNetN2N
from fastdenoise.models.unet_nb2nb import UNetNb2Nb
from fastdenoise.models.unet_noise2same import UNetNoise2Same

__all__ = ["ATBSN", "ATBSNRotated", "BlindUNet", "Blind2GradNet", "Student", "UNetN2N", "UNetNb2Nb", "UNetNoise2Same"]
