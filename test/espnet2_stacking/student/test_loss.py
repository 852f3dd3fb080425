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


@pytest.mark.parametrize("loss_type", ["mse", "l1", "l1_cos"])
@pytest.mark.parametrize("pred_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("target_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_a_float32_loss(loss_type, pred_dtype, target_dtype):
    """Under use_amp the heads give bf16/fp16 predictions and dumped targets are fp16: the
    distances are computed in float32 (both cast up, never the targets down)."""
    g = torch.Generator().manual_seed(3)
    pred = (torch.randn(2, 50, 64, generator=g) * 3).to(pred_dtype)
    tgt = (torch.randn(2, 50, 64, generator=g) * 3 + 0.01).to(target_dtype)
    lengths = torch.tensor([50, 31])
    loss = DistillationLoss(loss_type, intermediate_weight=0.5)
    total, terms = loss({4: pred, 12: pred}, {4: tgt, 12: tgt}, lengths)
    # the reference: the very same values, upcast to float32 by hand
    ref, ref_terms = loss({4: pred.float(), 12: pred.float()}, {4: tgt.float(), 12: tgt.float()}, lengths)
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms.values())
    assert ref.dtype == torch.float32
    torch.testing.assert_close(total, ref, rtol=1e-6, atol=1e-6)
    # a loss rounded to the prediction's dtype (what computing in it gives, at best) is further
    # from the float32 computation than this one
    low_err = (ref.to(pred_dtype).float() - ref).abs().item()
    assert low_err > 0 and (total - ref).abs().item() < low_err


def test_loss_is_float32_under_autocast():
    g = torch.Generator().manual_seed(4)
    head = torch.nn.Linear(16, 16)
    x, tgt = torch.randn(2, 9, 16, generator=g), torch.randn(2, 9, 16, generator=g).half()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = head(x)
        assert pred.dtype == torch.bfloat16
        total, _ = DistillationLoss("l1_cos")({4: pred}, {4: tgt}, torch.tensor([9, 5]))
    assert total.dtype == torch.float32
    ref, _ = DistillationLoss("l1_cos")({4: pred.float()}, {4: tgt.float()}, torch.tensor([9, 5]))
    torch.testing.assert_close(total, ref, rtol=1e-6, atol=1e-6)


def test_float64_targets_are_not_cast_down():
    pred, tgt = _pair(5)
    total, _ = DistillationLoss("mse")({4: pred}, {4: tgt.double()}, torch.tensor([7, 7]))
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, F.mse_loss(pred.double(), tgt.double()))
