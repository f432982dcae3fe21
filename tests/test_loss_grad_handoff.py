"""The fused losses hand their saved gradient straight on when d loss = 1 on the CPU
(``_runtime.scale_saved_grad``). Retained graphs, scaled losses and in-place edits of ``.grad`` must
still see the right values."""
import pytest
import torch

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import make_input


LOSSES = ["apr", "nb2nb", "p2n_pos", "p2n_neg", "recharge", "blind2grad"]


def _losses():
    y, fy = make_input((2, 3, 8, 12), gen_seed=1), make_input((2, 3, 8, 12), gen_seed=2)
    teachers = make_input((3, 2, 3, 8, 12), gen_seed=3)
    mask = (make_input((2, 1, 8, 12), gen_seed=4) > 0).float()
    return {
        "apr": lambda o, be: F.apr_loss(o, y, fy, 3, 4.0, backend=be),
        "nb2nb": lambda o, be: F.nb2nb_loss(o[..., :4, :6], y, fy, 3, 2.0, backend=be),
        "p2n_pos": lambda o, be: F.p2n_loss(o, fy, 1.5, backend=be),
        "p2n_neg": lambda o, be: F.p2n_loss(fy, o, 1.5, backend=be),
        "recharge": lambda o, be: F.recharge_l1_loss(o, y, teachers, 3, backend=be),
        "blind2grad": lambda o, be: F.blind2grad_loss(o, fy, y, mask, backend=be),
    }


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("name", LOSSES)   # names only: no tensor is made at collection
def test_unit_scaled_and_retained_backward(backend, name):
    fn = _losses()[name]
    out = make_input((2, 3, 8, 12), requires_grad=True)
    (g_ref,) = torch.autograd.grad(2.5 * fn(out, "torch"), out)
    loss = fn(out, backend)
    loss.backward(retain_graph=True)  # d loss = 1: the saved gradient itself is handed on
    first = out.grad.clone()
    torch.testing.assert_close(2.5 * first, g_ref)
    out.grad.mul_(0.0)  # an in-place edit of .grad must not reach the saved gradient
    loss.backward(retain_graph=True)
    torch.testing.assert_close(out.grad, first)
    (3.0 * loss).backward()  # a scaled d loss multiplies
    torch.testing.assert_close(out.grad, 4.0 * first)


def test_every_loss_is_listed():
    assert LOSSES == list(_losses())
