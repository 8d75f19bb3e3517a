"""CharTransformer: causal, starts at the uniform loss, learns, and is built from Blocks."""
import math

import pytest
import torch
import torch.nn.functional as F

from raytrainer.model import CharTransformer
from raytrainer.model.char_transformer import Block
from raytrainer.registry import MODELS


def _model(**kwargs) -> CharTransformer:
    torch.manual_seed(0)
    cfg = dict(block_size=16, embed_dim=32, num_layers=2, num_heads=4)
    return CharTransformer(**{**cfg, **kwargs}).eval()


def _batch(batch_size: int = 4, length: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, 256, (batch_size, length + 1),
                           generator=torch.Generator().manual_seed(1))
    return tokens[:, :-1], tokens[:, 1:]


def test_changing_a_token_changes_no_logit_before_it():
    model = _model()
    inputs, _ = _batch()
    changed = inputs.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 256
    with torch.no_grad():
        before, after = model(inputs), model(changed)
    assert before.shape == (4, 16, 256)
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_loss_at_initialisation_is_that_of_a_uniform_guess():
    inputs, targets = _batch()
    loss = _model()(inputs, targets, mode="loss")["loss"]
    assert loss.item() == pytest.approx(math.log(256), abs=0.05)


@pytest.mark.slow
def test_a_few_adamw_steps_on_a_fixed_batch_lower_the_loss():
    model = _model().train()
    inputs, targets = _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(inputs, targets, mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_predict_returns_each_sequences_summed_nll_and_token_count():
    model = _model()
    inputs, targets = _batch(3, 10)
    with torch.no_grad():
        nll, num_tokens = model(inputs, targets, mode="predict")
        logits = model(inputs)
    expected = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
    assert torch.allclose(nll, expected, atol=1e-4)
    assert num_tokens.tolist() == [10, 10, 10]


def test_layers_are_blocks_that_fsdp_can_shard_by_class_name():
    model = MODELS.build(dict(type="CharTransformer", block_size=8, embed_dim=16, num_layers=3,
                              num_heads=2))
    blocks = [m for m in model.modules() if type(m).__name__ == "Block"]
    assert len(blocks) == 3 and all(isinstance(b, Block) for b in blocks)


def test_initialisation_follows_the_seed():
    first, second = _model(), _model()
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_unusable_inputs_are_rejected():
    model = _model()
    with pytest.raises(ValueError, match="17 tokens exceed block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="mode must be 'loss', 'predict' or 'tensor'"):
        model(torch.zeros(1, 4, dtype=torch.long), mode="logits")
    with pytest.raises(ValueError, match="needs the target ids"):
        model(torch.zeros(1, 4, dtype=torch.long), mode="loss")
    with pytest.raises(ValueError, match="embed_dim \\(30\\) must be divisible by num_heads"):
        CharTransformer(embed_dim=30, num_heads=4)
