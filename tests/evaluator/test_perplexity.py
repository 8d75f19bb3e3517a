"""Perplexity: exp of the mean per-token NLL, accumulated over batches and gathered over ranks."""
import math
import os
import traceback

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from raytrainer.evaluator import Evaluator, Perplexity
from raytrainer.model import CharTransformer

from ..gloo_process import free_port

WORLD_SIZE = 2


def _logits_and_targets(batch_size: int, length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch_size, length, 256, generator=generator) * 3
    targets = torch.randint(0, 256, (batch_size, length), generator=generator)
    return logits, targets


def _per_sequence(logits: torch.Tensor, targets: torch.Tensor):
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
    return nll, torch.full_like(nll, targets.shape[1])


def test_value_is_exp_of_the_mean_nll_over_two_batches():
    first, second = _logits_and_targets(3, 7, seed=0), _logits_and_targets(2, 7, seed=1)
    metric = Perplexity()
    metric.process(None, _per_sequence(*first))
    metric.process(None, _per_sequence(*second))
    metrics = metric.evaluate(size=5)
    # By hand: one cross entropy over every token of both batches.
    logits = torch.cat([first[0], second[0]]).reshape(-1, 256)
    targets = torch.cat([first[1], second[1]]).reshape(-1)
    mean_nll = F.cross_entropy(logits.double(), targets).item()
    assert metrics["nll"] == pytest.approx(mean_nll, rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(mean_nll), rel=1e-6)
    assert metric.results == []


def test_sequences_weigh_by_their_token_count():
    metric = Perplexity()
    metric.process(None, [dict(nll=2.0, num_tokens=1), dict(nll=torch.tensor(4.0),
                                                           num_tokens=torch.tensor(3))])
    metrics = metric.evaluate(size=2)
    assert metrics == {"perplexity": pytest.approx(math.exp(1.5)), "nll": pytest.approx(1.5)}


def test_model_predictions_through_the_evaluator_match_the_model_loss():
    torch.manual_seed(0)
    model = CharTransformer(block_size=12, embed_dim=16, num_layers=1, num_heads=2).eval()
    tokens = torch.randint(0, 256, (6, 13), generator=torch.Generator().manual_seed(2))
    evaluator = Evaluator(dict(type="Perplexity", prefix="lm"))
    with torch.no_grad():
        for part in tokens.split(4):
            evaluator.process(model(part[:, :-1], part[:, 1:], mode="predict"))
        loss = model(tokens[:, :-1], tokens[:, 1:], mode="loss")["loss"].item()
    metrics = evaluator.evaluate(size=6)
    assert metrics["lm/nll"] == pytest.approx(loss, rel=1e-5)
    assert metrics["lm/perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_unusable_predictions_are_rejected():
    with pytest.raises(TypeError, match=r"expects \(nll, num_tokens\)"):
        Perplexity().process(None, [torch.zeros(2, 3)])
    with pytest.raises(KeyError, match="need 'nll' and 'num_tokens'"):
        Perplexity().process(None, [dict(loss=1.0)])



def _rank_evaluates(rank: int, port: int, out_dir: str, nll: torch.Tensor,
                    tokens: torch.Tensor) -> None:
    result: dict = {}
    try:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                             rank=rank, world_size=WORLD_SIZE)
        # DefaultSampler's split of 5 samples over 2 ranks: rank r takes r, r+2, ... and the
        # last rank repeats sample 0 to even out the shards.
        indices = list(range(rank, 6, WORLD_SIZE))
        indices = [i % 5 for i in indices]
        metric = Perplexity()
        for start in range(0, len(indices), 2):  # batches of 2
            chosen = indices[start:start + 2]
            metric.process(None, (nll[chosen], tokens[chosen]))
        result["metrics"] = metric.evaluate(size=5)
    except BaseException:
        result["error"] = traceback.format_exc()
    finally:
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_give_the_single_process_value_without_sampler_padding(tmp_path):
    nll = torch.tensor([3.0, 10.0, 1.0, 7.0, 2.0])
    tokens = torch.tensor([2, 4, 1, 3, 5])
    single = Perplexity()
    single.process(None, (nll, tokens))
    expected = single.evaluate(size=5)
    assert expected["nll"] == pytest.approx(23.0 / 15.0)
    mp.spawn(_rank_evaluates, args=(free_port(), str(tmp_path), nll, tokens),
             nprocs=WORLD_SIZE, join=True)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert "error" not in result, result["error"]
        assert result["metrics"] == expected
