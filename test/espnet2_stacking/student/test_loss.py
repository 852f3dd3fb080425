import pytest
import torch
import torch.nn.functional as F

from espnet2_stacking.student.loss import DistillationLoss


def _pair(seed=0, b=2, t=7, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, d, generator=g), torch.randn(b, t, d, generator=g)


def test_mse_ignores_padded_frames():
    pred, tgt = _pair()
    lengths = torch.tensor([7, 4])
    loss = DistillationLoss("mse")
    total, terms = loss({12: pred}, {12: tgt}, lengths)
    # independent: concatenate the valid frames and use torch's mse
    valid_p = torch.cat([pred[0, :7], pred[1, :4]])
    valid_t = torch.cat([tgt[0, :7], tgt[1, :4]])
    assert torch.allclose(total, F.mse_loss(valid_p, valid_t), atol=1e-6)
    # garbage in padded frames changes nothing
    pred2 = pred.clone()
    pred2[1, 4:] = 1e6
    assert torch.allclose(loss({12: pred2}, {12: tgt}, lengths)[0], total)


def test_l1_cos_logsigmoid_and_raw():
    pred, tgt = _pair(1)
    lengths = torch.tensor([7, 7])
    l1 = F.l1_loss(pred, tgt)
    cos = F.cosine_similarity(pred, tgt, dim=-1)
    for cos_type, expected in (
        ("logsigmoid", l1 - 2.0 * F.logsigmoid(cos).mean()),
        ("raw", l1 - 2.0 * cos.mean()),
    ):
        loss = DistillationLoss("l1_cos", cos_type=cos_type, cos_weight=2.0)
        total, _ = loss({4: pred}, {4: tgt}, lengths)
        assert torch.allclose(total, expected, atol=1e-5), cos_type


@pytest.mark.parametrize("reduce,expected", [("sum", 1.0 + 0.5 * (4.0 + 9.0)), ("mean", 1.0 + 0.5 * 6.5)])
def test_output_plus_weighted_intermediate(reduce, expected):
    z = torch.zeros(1, 3, 2)
    preds = {4: z + 2, 8: z + 3, 12: z + 1}
    targets = {4: z, 8: z, 12: z}
    loss = DistillationLoss("mse", intermediate_weight=0.5, intermediate_reduce=reduce)
    total, terms = loss(preds, targets, torch.tensor([3]))
    assert total.item() == pytest.approx(expected)
    assert {k: round(v.item(), 4) for k, v in terms.items()} == {4: 4.0, 8: 9.0, 12: 1.0}


def test_mismatched_pairs_are_an_error():
    z = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="targets"):
        DistillationLoss()({4: z}, {8: z}, torch.tensor([3]))
